"""llama.cpp's K- and IQ-quants as a weight-level peer of bench/quality.py.

The quantizers are llama.cpp's own C code: ``ggml_quantize_chunk`` and the
per-type ``to_float`` dequantizers of ggml's base library, built from the
llama.cpp copy vendored in the llama-cpp-python source distribution by
bench/build_ggml.sh (into build/ggml/) and called through ctypes.

What llama.cpp's ``llama-quantize`` would do is reproduced in two parts:

* the per-tensor type of a file type (Q4_K_M, IQ4_XS, ...): ``tensor_type``
  follows ``llama_tensor_get_type_impl`` and ``tensor_type_fallback`` in
  vendor/llama.cpp/src/llama-quant.cpp for the file types used here, including
  the fallback of 256-weight super-block types on rows whose length is not a
  multiple of 256 (SmolLM2's and MiniLM's hidden sizes, 576 and 384);
* the importance matrix: per linear map, the mean over calibration tokens of
  each input column's square, as llama.cpp's imatrix tool accumulates it
  (``collect_imatrix``).

Bits per weight are the quantized bytes (``ggml_row_size`` per row) times 8 over
the weights of the block linear maps.
"""

from __future__ import annotations

import ctypes
import glob
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
GGML_DIR = ROOT / "build" / "ggml"

# enum ggml_type (ggml/include/ggml.h of the vendored copy)
GGML_TYPES = {"F16": 1, "Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q8_0": 8, "Q2_K": 10, "Q3_K": 11, "Q4_K": 12,
              "Q5_K": 13, "Q6_K": 14, "IQ4_NL": 20, "IQ4_XS": 23}  # fmt: skip

# weights per block (ggml_blck_size; checked against the library before each use)
BLOCK = {"F16": 1, "Q4_0": 32, "Q4_1": 32, "Q5_0": 32, "Q5_1": 32, "Q8_0": 32, "Q2_K": 256, "Q3_K": 256, "Q4_K": 256,
         "Q5_K": 256, "Q6_K": 256, "IQ4_NL": 32, "IQ4_XS": 256}  # fmt: skip

# llama-quant.cpp: tensor_type_fallback (types with 256-weight super-blocks -> 32-weight blocks)
FALLBACK = {"Q2_K": "Q4_0", "Q3_K": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0", "IQ4_XS": "IQ4_NL"}

# the file types of the benchmark rows, and (llama-quant.cpp: llama_ftype_get_default_type) their default types
FTYPES = ("Q5_K_M", "Q5_K_S", "Q4_K_M", "Q4_K_S", "IQ4_XS", "IQ4_NL")
FTYPE_DEFAULT = {"Q4_K_S": "Q4_K", "Q4_K_M": "Q4_K", "Q5_K_S": "Q5_K", "Q5_K_M": "Q5_K", "IQ4_XS": "IQ4_XS",
                 "IQ4_NL": "IQ4_NL"}  # fmt: skip


class _TypeTraits(ctypes.Structure):
    _fields_ = [
        ("type_name", ctypes.c_char_p),
        ("blck_size", ctypes.c_int64),
        ("blck_size_interleave", ctypes.c_int64),
        ("type_size", ctypes.c_size_t),
        ("is_quantized", ctypes.c_bool),
        ("to_float", ctypes.c_void_p),
        ("from_float_ref", ctypes.c_void_p),
    ]


_TO_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int64)
class Unavailable(OSError):
    """ggml's base library is not built or does not load."""


_lib: Any = None
_error: str | None = None


def library_path() -> Path | None:
    found = sorted(glob.glob(str(GGML_DIR / "build" / "**" / "libggml-base.so*"), recursive=True))
    files = [p for p in found if not Path(p).is_symlink()]
    return Path(files[0]) if files else None


def load() -> Any:
    """The ctypes handle of libggml-base; raises Unavailable with the reason when it is not there."""
    global _lib, _error
    if _lib is not None:
        return _lib
    if _error is not None:
        raise Unavailable(_error)
    path = library_path()
    if path is None:
        failed = GGML_DIR / "FAILED"
        why = failed.read_text().strip() if failed.is_file() else "not built"
        _error = f"ggml's base library is not available ({why}; run bash bench/build_ggml.sh)"
        raise Unavailable(_error)
    try:
        lib = ctypes.CDLL(str(path))
        lib.ggml_quantize_chunk.restype = ctypes.c_size_t
        lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_float), ctypes.c_void_p,
                                            ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.POINTER(ctypes.c_float)]  # fmt: skip
        lib.ggml_row_size.restype = ctypes.c_size_t
        lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
        lib.ggml_blck_size.restype = ctypes.c_int64
        lib.ggml_blck_size.argtypes = [ctypes.c_int]
        lib.ggml_get_type_traits.restype = ctypes.POINTER(_TypeTraits)
        lib.ggml_get_type_traits.argtypes = [ctypes.c_int]
        lib.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
        lib.ggml_quantize_requires_imatrix.argtypes = [ctypes.c_int]
    except (OSError, AttributeError) as exc:
        _error = f"cannot load {path}: {exc}"
        raise Unavailable(_error) from exc
    _lib = lib
    return lib


def unavailable() -> str | None:
    """None when the library loads, else why not."""
    try:
        load()
    except Unavailable as exc:
        return str(exc)
    return None


def quantize_dequantize(w: torch.Tensor, type_name: str, imatrix: torch.Tensor | None) -> tuple[torch.Tensor, int]:
    """Quantize a 2-D weight (rows = output features, n_per_row = input features) and dequantize it; (weight, bytes)."""
    lib = load()
    t = GGML_TYPES[type_name]
    src = np.ascontiguousarray(w.detach().to(torch.float32).numpy())
    nrows, n_per_row = src.shape
    if n_per_row % lib.ggml_blck_size(t):
        raise ValueError(f"{type_name} needs rows of a multiple of {lib.ggml_blck_size(t)} weights, not {n_per_row}")
    if lib.ggml_blck_size(t) != BLOCK[type_name]:
        raise RuntimeError(f"{type_name}: ggml's block size {lib.ggml_blck_size(t)} is not {BLOCK[type_name]}")
    row_size = int(lib.ggml_row_size(t, n_per_row))
    dst = np.zeros(nrows * row_size, dtype=np.uint8)
    fp = ctypes.POINTER(ctypes.c_float)
    imat = None
    if imatrix is not None:
        imat_arr = np.ascontiguousarray(imatrix.detach().to(torch.float32).numpy())
        if imat_arr.shape != (n_per_row,):
            raise ValueError(f"imatrix of shape {imat_arr.shape} for rows of {n_per_row}")
        imat = imat_arr.ctypes.data_as(fp)
    elif lib.ggml_quantize_requires_imatrix(t):
        raise ValueError(f"{type_name} requires an importance matrix")
    size = lib.ggml_quantize_chunk(t, src.ctypes.data_as(fp), dst.ctypes.data_as(ctypes.c_void_p), 0, nrows, n_per_row, imat)
    if size != nrows * row_size:
        raise RuntimeError(f"ggml_quantize_chunk wrote {size} bytes, expected {nrows * row_size}")
    traits = lib.ggml_get_type_traits(t).contents
    if not traits.to_float:
        raise RuntimeError(f"ggml has no to_float for {type_name}")
    out = np.empty(nrows * n_per_row, dtype=np.float32)
    _TO_FLOAT(traits.to_float)(dst.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(fp), nrows * n_per_row)
    return torch.from_numpy(out.reshape(nrows, n_per_row)).to(w.dtype), int(size)


def llamacpp_quant(type_name: str, imatrix_for_tensor: Callable[[torch.Tensor], torch.Tensor | None] | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """A ``quant(w)`` of one ggml type for every weight (no per-tensor rules); ``quant.stats`` holds [bytes, weights]."""
    stats = [0, 0]

    def quant(w: torch.Tensor) -> torch.Tensor:
        back, size = quantize_dequantize(w, type_name, imatrix_for_tensor(w) if imatrix_for_tensor else None)
        stats[0] += size
        stats[1] += w.numel()
        return back

    quant.stats = stats  # type: ignore[attr-defined]
    return quant


# -- llama.cpp's per-tensor type rules ----------------------------------------------------------


def category(name: str) -> str:
    """llama.cpp's tensor category of a Hugging Face linear map name (Llama- and BERT-style blocks)."""
    leaf = name.split(".")
    last = leaf[-1]
    table = {"q_proj": "attn_q", "query": "attn_q", "k_proj": "attn_k", "key": "attn_k", "v_proj": "attn_v",
             "value": "attn_v", "o_proj": "attn_output", "gate_proj": "ffn_gate", "up_proj": "ffn_up",
             "down_proj": "ffn_down"}  # fmt: skip
    if last in table:
        return table[last]
    if name.endswith("attention.output.dense"):
        return "attn_output"
    if name.endswith("intermediate.dense"):
        return "ffn_up"
    if name.endswith("output.dense"):
        return "ffn_down"
    raise ValueError(f"no llama.cpp tensor category for {name}")


def layer_index(name: str) -> int:
    parts = name.split(".")
    for i, p in enumerate(parts[:-1]):
        if p in ("layers", "layer") and parts[i + 1].isdigit():
            return int(parts[i + 1])
    raise ValueError(f"no layer index in {name}")


def _use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def tensor_type(ftype: str, cat: str, layer: int, n_layer: int, n_per_row: int, n_gqa: int, has_imatrix: bool = True) -> tuple[str, str]:
    """(type llama.cpp's mix asks for, type used after the shape fallback) of one block linear map.

    The attn_v/ffn_down counters of llama-quant.cpp equal the layer index here
    (one such tensor per layer, quantized in layer order); n_expert = 1, arch
    neither Falcon nor 70B.
    """
    t = FTYPE_DEFAULT[ftype]
    if cat == "attn_v":
        if ftype in ("IQ4_NL", "IQ4_XS") and n_gqa >= 4:
            t = "Q5_K"
        elif ftype in ("Q4_K_M", "Q5_K_M") and _use_more_bits(layer, n_layer):
            t = "Q6_K"
        elif ftype == "Q4_K_S" and layer < 4:
            t = "Q5_K"
    elif cat == "ffn_down":
        if ftype == "Q4_K_M":
            if _use_more_bits(layer, n_layer):
                t = "Q6_K"
        elif layer < n_layer // 8 and ftype in ("IQ4_NL", "IQ4_XS") and not has_imatrix:
            t = "Q5_K"
        elif ftype == "Q5_K_M" and _use_more_bits(layer, n_layer):
            t = "Q6_K"
        elif ftype == "Q4_K_S" and layer < n_layer // 8:
            t = "Q5_K"
    target = t
    if n_per_row % BLOCK[t]:
        t = FALLBACK.get(t, t)
        if n_per_row % BLOCK[t]:
            t = "F16"
    return target, t


def plan(ftype: str, weights: Iterable[tuple[str, torch.Tensor]], n_layer: int, n_gqa: int) -> dict[str, tuple[str, str]]:
    """name -> (asked type, used type) for every block linear map."""
    return {name: tensor_type(ftype, category(name), layer_index(name), n_layer, int(w.shape[1]), n_gqa)
            for name, w in weights}  # fmt: skip


def describe(types: dict[str, tuple[str, str]], widths: dict[str, int] | None = None) -> str:
    """The types used per tensor family, e.g. "attn_q/k/v/output ffn_gate/up Q5_1; ffn_down Q5_K" (no commas)."""
    n_layer = len({layer_index(n) for n in types})
    by_cat: dict[str, Counter[str]] = {}
    for name, (_, used) in types.items():
        by_cat.setdefault(category(name), Counter())[used] += 1
    groups: dict[str, list[str]] = {}
    for cat in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"):
        if cat in by_cat:
            counts = sorted(by_cat[cat].items(), key=lambda kv: (-kv[1], kv[0]))
            key = " + ".join(t if n == n_layer else f"{t} x{n}" for t, n in counts)
            groups.setdefault(key, []).append(cat)
    parts = []
    for key, cats in groups.items():
        attn = [c.removeprefix("attn_") for c in cats if c.startswith("attn_")]
        ffn = [c.removeprefix("ffn_") for c in cats if c.startswith("ffn_")]
        names = ("attn_" + "/".join(attn) if attn else "", "ffn_" + "/".join(ffn) if ffn else "")
        parts.append(" ".join(n for n in names if n) + " " + key)
    text = "; ".join(parts)
    if widths is not None:
        fell = sorted({widths[n] for n, (asked, used) in types.items() if asked != used})
        if fell:
            text += f"; {'/'.join(map(str, fell))}-wide rows: 32-block fallback"
    return text


def label(ftype: str, types: dict[str, tuple[str, str]], widths: dict[str, int]) -> str:
    """Row label of a file type: what llama.cpp's rules actually used (no commas: --only splits on them)."""
    return f"llama.cpp {ftype} + imatrix [{describe(types, widths)}]"


def apply_plan(weights: list[tuple[str, torch.nn.Parameter]], types: dict[str, tuple[str, str]], imatrix: dict[str, torch.Tensor]) -> float:
    """Quantize and dequantize every weight in place with its planned type and imatrix; returns bits per weight."""
    size, count = 0, 0
    with torch.no_grad():
        for name, w in weights:
            back, nbytes = quantize_dequantize(w.detach(), types[name][1], imatrix.get(name))
            w.copy_(back)
            size += nbytes
            count += w.numel()
    return 8 * size / count


# -- importance matrix ----------------------------------------------------------------------------


def collect_imatrix(model: torch.nn.Module, names: list[str], run: Callable[[], None], keep: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Mean over tokens of each input column's square for the named linear maps, over the forward passes of ``run``.

    ``keep`` (flattened token mask, for one batch) drops padding positions.
    """
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    handles = []
    for name in names:

        def hook(_m: torch.nn.Module, inputs: tuple[Any, ...], name: str = name) -> None:
            x = inputs[0].reshape(-1, inputs[0].shape[-1]).to(torch.float64)
            if keep is not None:
                x = x[keep]
            sums[name] = sums.get(name, 0) + (x * x).sum(0)
            counts[name] = counts.get(name, 0) + x.shape[0]

        handles.append(model.get_submodule(name).register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return {n: (sums[n] / counts[n]).to(torch.float32) for n in names}


def lm_imatrix(model: torch.nn.Module, model_dir: Path, names: list[str], batch: int = 4) -> dict[str, torch.Tensor]:
    """Importance matrix of a causal LM over uc_attest's calibration windows (default options: 128 x 512 tokens
    evenly spaced over default_calibration_text(), the windows of the calibrated coder), float32, no KV cache."""
    from uc_attest._internal.compress.calibrated import calibration_ids
    from uc_attest._internal.compress.options import CompressOptions

    windows, _ = calibration_ids(model_dir, CompressOptions(), int(model.config.vocab_size))
    model = model.to(torch.float32)

    def run() -> None:
        for i in range(0, windows.shape[0], batch):
            model(input_ids=windows[i : i + batch], use_cache=False)

    return collect_imatrix(model, names, run)


def n_layer_and_gqa(config: Any) -> tuple[int, int]:
    heads = int(config.num_attention_heads)
    return int(config.num_hidden_layers), heads // int(getattr(config, "num_key_value_heads", None) or heads)


def self_check() -> None:
    """The bindings round-trip before any row is trusted: sizes as llama.cpp defines them, small error.

    Run by bench/quality.py whenever the library is there (the test suite cannot: CI does not build it).
    """
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(8, 512, generator=gen)
    for name, bpw in (("Q5_1", 6.0), ("Q4_K", 4.5), ("IQ4_XS", 4.25)):
        back, size = quantize_dequantize(w, name, torch.rand(512, generator=gen) + 0.1)
        err = float(((back - w) ** 2).mean() / (w**2).mean())
        if size * 8 / w.numel() != bpw or not err < 0.01:
            raise RuntimeError(f"llama.cpp {name} round trip is wrong: {size * 8 / w.numel()} bpw, relative error {err:.3g}")
