"""The canonical reconstruction and the tensor digest, on numpy arrays only.

The one rule the whole project rests on:

    w[..] = round_to(dtype, fp32(codebook[code[..]]) * fp32(scale[.. block ..]))

one IEEE-754 float32 multiply, one round-to-nearest-even to the reconstruction
dtype. A tensor whose codec names an incoherence ``transform`` (format 1.1)
puts the float32 products through it before that one rounding: additions,
subtractions and exact multiplies, elementwise in a fixed order
(incoherence.py). Nothing is fused or reordered, so every IEEE machine produces the same
bits; the compressor computes its final weights with this same function, so what
the vendor measured is what the customer rebuilds.

This module needs numpy and nothing else, so that ``uc verify`` can prove every
reconstructed tensor without importing a deep-learning framework (torch's import
alone costs more than hashing a gigabyte). ``reconstruct.py`` wraps it for
torch callers. A bf16 result is carried as its uint16 bit patterns, since
numpy has no bfloat16.

Blocks run along ``block_axis``; the scale tensor has the tensor's shape with
that axis replaced by ceil(n / block_size). When n is not a multiple of the block
size the last block is simply shorter (it covers the remaining n mod block_size
weights); nothing is padded in the reconstructed tensor.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np

from . import native
from .bitpack import unpack_codes
from .incoherence import check_transform, inverse_scale_exponent, inverse_transform, signs
from .params import CodecParams

DIGEST_DOMAIN = b"uc-attest/tensor-digest/v1\n"

# numpy storage of each reconstruction dtype (bf16 as its bit patterns).
STORAGE_OF: dict[str, np.dtype] = {
    "bfloat16": np.dtype(np.uint16),
    "float16": np.dtype(np.float16),
    "float32": np.dtype(np.float32),
}

BF16_CANONICAL_NAN = 0x7FC0  # the quiet NaN every IEEE float32 -> bf16 conversion we match produces


def num_blocks(length: int, block_size: int) -> int:
    return math.ceil(length / block_size) if length else 0


def scales_shape(shape: Sequence[int], params: CodecParams) -> tuple[int, ...]:
    out = list(shape)
    out[params.block_axis] = num_blocks(shape[params.block_axis], params.block_size)
    return tuple(out)


def check_codec_state(codebook: np.ndarray, scales: np.ndarray, shape: Sequence[int], params: CodecParams) -> None:
    """The codebook and scales a reconstruction needs, or ValueError (shared by both paths)."""
    if codebook.dtype != np.float32 or codebook.size != (1 << params.bits):
        raise ValueError("codebook must be float32 with 2**bits entries")
    if scales.dtype != np.float16:
        raise ValueError("scales must be float16")
    if tuple(scales.shape) != scales_shape(shape, params):
        raise ValueError(f"scales shape {tuple(scales.shape)} does not match {scales_shape(shape, params)}")
    if params.transform is not None:
        check_transform(params.transform, shape[params.block_axis])


def round_float32_to_bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """IEEE round-to-nearest-even of float32 to bf16, as uint16 bit patterns (NaN -> 0x7FC0)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = (bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))) >> np.uint32(16)
    out = rounded.astype(np.uint16)
    nan = np.isnan(values)
    if nan.any():
        out[nan] = BF16_CANONICAL_NAN
    return out


def round_float32_to(dtype: str, values: np.ndarray) -> np.ndarray:
    """The one rounding of the rule: float32 to the reconstruction dtype's storage (RNE, no flush-to-zero)."""
    if dtype == "bfloat16":
        return round_float32_to_bfloat16_bits(values)
    if dtype == "float16":
        with np.errstate(over="ignore"):  # overflow to infinity is the defined IEEE result
            return values.astype(np.float16)
    if dtype == "float32":
        return values
    raise ValueError(f"unknown reconstruction dtype {dtype!r}")


def _multiply_blocks(values: np.ndarray, scales: np.ndarray, params: CodecParams) -> None:
    """values[.., j, ..] *= scales[.., j // B, ..] in place, one float32 multiply per element.

    Works on block-shaped views so that the expanded scale tensor is built only
    for a tail block or an axis numpy cannot view in blocks.
    """
    v = np.moveaxis(values, params.block_axis, -1)
    s = np.moveaxis(scales, params.block_axis, -1)
    n, size = v.shape[-1], params.block_size
    full = n // size
    with np.errstate(over="ignore"):  # overflow to infinity is the defined IEEE result, not an error
        if full:
            main = v[..., : full * size]
            blocks = main.reshape(*main.shape[:-1], full, size)
            if np.shares_memory(blocks, values):
                np.multiply(blocks, s[..., :full, None], out=blocks)
            else:  # the reshape had to copy: multiply by the expanded scales instead
                main *= np.repeat(s[..., :full], size, axis=-1)
        if n % size:
            tail = v[..., full * size :]
            np.multiply(tail, s[..., full : full + 1], out=tail)


def reconstruct_codes_array(codes: np.ndarray, codebook: np.ndarray, scales: np.ndarray, params: CodecParams) -> np.ndarray:
    """The reference path: unpacked integer codes (shape = tensor shape) to the dtype's storage array."""
    shape = tuple(codes.shape)
    scales16 = np.asarray(scales)
    check_codec_state(np.asarray(codebook), scales16, shape, params)
    values = np.asarray(codebook)[codes.astype(np.uint8, copy=False)]  # float32 gather
    _multiply_blocks(values, scales16.astype(np.float32), params)  # float16 -> float32 is exact
    if params.transform is not None:
        values = inverse_transform(values, params)
    return round_float32_to(params.dtype, values)


def reconstruct_array(
    packed_codes: np.ndarray,
    codebook: np.ndarray,
    scales: np.ndarray,
    shape: Sequence[int],
    params: CodecParams,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Unpack codes and reconstruct into the dtype's storage array of ``shape``; ValueError on any inconsistency.

    Uses the fused kernel (native.py) where it applies, writing into ``out``
    when given (a caller that reconstructs many groups reuses one buffer and so
    never pays the page faults of a fresh allocation); otherwise the numpy path
    of :func:`reconstruct_codes_array`, which the tests compare it with.
    """
    shape = tuple(int(d) for d in shape)
    if not 0 <= params.block_axis < len(shape):
        raise ValueError(f"block_axis {params.block_axis} out of range for shape {shape}")
    cb, sc = np.asarray(codebook), np.asarray(scales)
    if native.applies(params, shape):
        check_codec_state(cb, sc, shape, params)
        if params.transform is not None:  # the kernel's float32 products, then the transform and the rounding here
            products = native.decode(packed_codes, cb, sc, shape, params.model_copy(update={"dtype": "float32"}))
            kernel = native.hadamard_kernel()
            if kernel is not None and params.dtype == "bfloat16":  # transform and rounding fused, one pass
                assert params.transform is not None
                rounded = np.empty(products.size, dtype=np.uint16)
                kernel(products, signs(params.transform.seed, shape[-1]), params.transform.size, shape[-1],
                       float(2.0 ** -inverse_scale_exponent(params.transform.size)), rounded)  # fmt: skip
                return rounded.reshape(shape)
            values = inverse_transform(products.reshape(shape), params)
            return round_float32_to(params.dtype, values)
        return native.decode(packed_codes, cb, sc, shape, params, out=out).reshape(shape)
    codes = unpack_codes(packed_codes, params.bits, math.prod(shape)).reshape(shape)
    return reconstruct_codes_array(codes, cb, sc, params)


def digest_header(dtype_name: str, shape: Sequence[int]) -> bytes:
    """Unambiguous header: domain, dtype name, comma-separated shape, each line-terminated."""
    return DIGEST_DOMAIN + dtype_name.encode() + b"\n" + ",".join(str(int(d)) for d in shape).encode() + b"\n"


def digest_of_bytes(dtype_name: str, shape: Sequence[int], data: bytes | memoryview | np.ndarray) -> str:
    """SHA-256 over the header and the tensor's C-order little-endian bytes."""
    h = hashlib.sha256(digest_header(dtype_name, shape))
    h.update(data)  # type: ignore[arg-type]  # numpy arrays export the buffer protocol
    return "sha256:" + h.hexdigest()


def little_endian_bytes(array: np.ndarray) -> np.ndarray:
    """A flat uint8 view of the array's C-order little-endian bytes (no copy on little-endian machines)."""
    le = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return np.ascontiguousarray(le).reshape(-1).view(np.uint8)
