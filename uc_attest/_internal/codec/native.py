"""The fused reconstruction kernel (C, optional) and when it applies.

``_native.decode`` computes the canonical reconstruction in one pass over the
packed codes (see _native.c). The numpy path in reconstruct.py is the reference
definition; the tests assert that both give identical bits on every width,
shape and extreme value. The kernel is built when the package is installed; a
source tree without it (or ``UC_ATTEST_NATIVE=0`` in the environment) uses the
numpy path, with the same results, only slower. On x86-64 the kernel takes a
vector path for widths 2-6, chosen at run time: AVX-512 VBMI where the CPU has
it, else AVX2 (same bits either way). ``UC_ATTEST_NATIVE=avx2`` caps it at the
AVX2 path and ``UC_ATTEST_NATIVE=scalar`` keeps it to its portable loops, which
the tests use to compare every path the machine has.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

import numpy as np

from .params import CodecParams

try:
    from . import _native  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - exercised by running without the built extension
    _native = None

_OUT_KIND = {"bfloat16": 0, "float32": 1}


def available() -> bool:
    """True when the compiled kernel is importable and not switched off."""
    return _native is not None and os.environ.get("UC_ATTEST_NATIVE", "1") != "0"


VECTOR_PATHS = ("scalar", "avx2", "avx512vbmi")  # index = the kernel's vector level


def _max_vector_level() -> int:
    """The best path the environment allows: UC_ATTEST_NATIVE=scalar -> 0, =avx2 -> 1, otherwise any."""
    return {"scalar": 0, "avx2": 1}.get(os.environ.get("UC_ATTEST_NATIVE", "1"), 2)


def vector_path() -> str:
    """The path decode takes for shapes it vectorises: "avx512vbmi", "avx2" or "scalar" (CPU and environment)."""
    if not available():
        return "scalar"
    assert _native is not None  # available() said so
    return VECTOR_PATHS[min(int(_native.vector_level()), _max_vector_level())]


def applies(params: CodecParams, shape: Sequence[int]) -> bool:
    """The kernel covers blocks along the last axis and bf16/float32 output (every linear map uc_attest writes)."""
    return available() and len(shape) >= 1 and params.block_axis == len(shape) - 1 and params.dtype in _OUT_KIND


def hadamard_kernel() -> Callable[..., None] | None:
    """The kernel's in-place incoherence transform (incoherence.py's steps 1-4), or None (numpy path)."""
    if not available():
        return None
    return getattr(_native, "hadamard", None)  # a kernel built before the transform existed lacks it


def decode(packed: np.ndarray, codebook: np.ndarray, scales: np.ndarray, shape: Sequence[int], params: CodecParams,
           out: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Reconstruction as a flat little-endian array (uint16 bf16 bit patterns, or float32), C order.

    With ``out`` (a flat, contiguous array of the output dtype with at least as
    many elements) the result is written into its front and a view of it is
    returned, so a caller decoding group after group reuses one buffer.

    ``packed`` holds exactly the codes of ``shape`` from bit 0; ``scales`` are
    float16 or float32 (widening float16 is exact), block axis last. Padding
    bits after the last code must be zero and the byte count exact, as in the
    numpy path (ValueError otherwise).
    """
    assert _native is not None
    cols = int(shape[-1])
    rows = math.prod(int(d) for d in shape[:-1])
    count = rows * cols
    data = np.ascontiguousarray(packed, dtype=np.uint8).reshape(-1)
    expected = (count * params.bits + 7) // 8
    if data.size != expected:
        raise ValueError(f"packed codes have {data.size} bytes, expected {expected}")
    tail_bits = (count * params.bits) % 8
    if tail_bits and int(data[-1]) >> tail_bits:
        raise ValueError("non-zero padding bits after the last code")
    out_dtype = np.uint16 if params.dtype == "bfloat16" else np.float32
    if out is None or out.dtype != out_dtype or out.ndim != 1 or out.size < count or not out.flags.c_contiguous:
        out = np.empty(count, dtype=out_dtype)
    result = out[:count]
    _native.decode(
        result, data, params.bits, np.ascontiguousarray(codebook, dtype=np.float32),
        np.ascontiguousarray(scales, dtype=np.float32), rows, cols, params.block_size, _OUT_KIND[params.dtype],
        _max_vector_level(),
    )  # fmt: skip
    return result
