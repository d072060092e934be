#!/usr/bin/env bash
# CI, after the test suite: build the sdist and the wheel, install the wheel into a fresh venv and use
# it as a customer would (uc verify, uc export + --deployed, attest check with its PDF report) on a
# small delivery, from a directory outside the source tree. Shows that the wheel carries every
# subpackage, the templates, fonts and policies, and the C kernel (or falls back to numpy).
#
# To keep CI time small the fresh venv takes its dependencies (torch, transformers, ...) from the
# set-up venv through a .pth line, and installs only the wheel itself (--no-deps): the code that runs
# is the wheel's, nothing is imported from the source tree.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

"$PY" -m build --no-isolation --sdist --wheel --outdir "$WORK/dist" "$ROOT" >"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log"; exit 1; }
ls "$WORK"/dist/uc_attest-*.tar.gz "$WORK"/dist/uc_attest-*.whl

python_bin=$("$PY" -c 'import sys; print(sys.executable)')
"$python_bin" -m venv "$WORK/venv"
V="$WORK/venv/bin"
"$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' >"$("$V/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/set-up-venv-deps.pth"
"$V/python" -m pip install -q --no-deps --no-index "$WORK"/dist/uc_attest-*.whl

cd "$WORK"
"$V/python" - <<'PY'
import pathlib, sys
import uc_attest
from uc_attest._internal.codec import native
from uc_attest._internal.policy.resources import policies_dir
from uc_attest._internal.report.resources import templates_dir
where = pathlib.Path(uc_attest.__file__).resolve()
assert "/venv/lib/" in str(where), f"uc_attest imported from {where}, not from the wheel"
assert (policies_dir() / "default.toml").is_file() and (templates_dir() / "report.html.j2").is_file()
assert list((templates_dir() / "fonts").iterdir()), "no fonts in the wheel"
assert "torch" not in sys.modules, "import uc_attest must not import torch"
assert all(getattr(uc_attest, name) is not None for name in uc_attest.__all__), "a public name does not resolve in the wheel"
print(f"uc_attest {uc_attest.__version__} from {where.parent}; reconstruction kernel: {'C ' + native.vector_path() if native.available() else 'numpy fallback'}")
PY
# the coder's compiled column loop and codebook learner are in the wheel too (importing it does not import torch)
"$V/python" -c "import importlib.util as u; assert u.find_spec('uc_attest._internal.compress._sweep'), 'no GPTQ sweep kernel in the wheel'; print('GPTQ sweep kernel: C')"
"$V/python" -c "import importlib.util as u; assert u.find_spec('uc_attest._internal.codec._lloyd'), 'no codebook learner kernel in the wheel'; print('codebook learner kernel: C')"
"$V/python" -c "import sys; sys.path.insert(0, '$ROOT/tests'); from support.models import build_tokenized_model; build_tokenized_model(__import__('pathlib').Path('model'))" >/dev/null 2>&1

"$V/uc" compress model -o pack --method datafree --bits 4 --block-size 32 --quiet >/dev/null
"$V/uc" verify pack --quiet | tail -1
"$V/attest" keygen -o vendor >/dev/null
"$V/attest" sign pack --key vendor.key --baseline model --seq-len 16 --max-windows 2 --quiet >/dev/null
"$V/attest" check pack --key vendor.pub --json results.json --report report.pdf --quiet | tail -1
"$V/uc" export pack -o served --quiet >/dev/null
"$V/uc" verify pack --deployed served --quiet | tail -1
"$V/python" -m uc_attest uc --version
"$V/python" - <<'PY'
import uc_attest
vendor = uc_attest.KeyAnchor("vendor.pub")
verified = uc_attest.verify_pack("pack")
statement = uc_attest.verify_bundle("pack.sigstore.json", vendor)
uc_attest.load_model(verified, expected_manifest_sha256=verified.report.manifest_sha256)
print(f"public API: pack verified ({len(verified.report.tensors)} tensors), loaded, bundle verified (perplexity {statement.predicate.measurement.pack.perplexity:.3f})")
PY
echo "wheel check: PASS"
