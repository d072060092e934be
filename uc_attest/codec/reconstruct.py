"""The canonical reconstruction and the tensor digest.

The one rule the whole project rests on:

    w[..] = round_to(dtype, fp32(codebook[code[..]]) * fp32(scale[.. block ..]))

one IEEE-754 float32 multiply, one round-to-nearest-even to the reconstruction
dtype. Nothing is fused or reordered, so every IEEE machine produces the same
bits; the compressor computes its final weights with this same function, so what
the vendor measured is what the customer rebuilds.

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
import torch

from . import native
from .bitpack import unpack_codes
from .params import CodecParams

TORCH_DTYPES: dict[str, torch.dtype] = {
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float32": torch.float32,
    "float64": torch.float64,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
DTYPE_NAMES: dict[torch.dtype, str] = {v: k for k, v in TORCH_DTYPES.items()}

DIGEST_DOMAIN = b"uc-attest/tensor-digest/v1\n"


def num_blocks(length: int, block_size: int) -> int:
    return math.ceil(length / block_size) if length else 0


def scales_shape(shape: Sequence[int], params: CodecParams) -> tuple[int, ...]:
    out = list(shape)
    out[params.block_axis] = num_blocks(shape[params.block_axis], params.block_size)
    return tuple(out)


def expand_scales(scales: torch.Tensor, shape: Sequence[int], params: CodecParams) -> torch.Tensor:
    """float32 scale for every element: scale[.., j // block_size, ..] along block_axis."""
    axis = params.block_axis
    wide = scales.to(torch.float32)  # float16 -> float32 is exact
    wide = torch.repeat_interleave(wide, params.block_size, dim=axis)
    return wide.narrow(axis, 0, shape[axis])


def _multiply_blocks_inplace(values: np.ndarray, scales: np.ndarray, params: CodecParams) -> bool:
    """values[.., j, ..] *= scales[.., j // B, ..] in place, one float32 multiply per element.

    Works on block-shaped views so the expanded scale tensor is never built.
    Returns False when numpy cannot express the views (the caller falls back).
    """
    with np.errstate(over="ignore"):  # overflow to infinity is the defined IEEE result, not an error
        return _multiply_blocks(values, scales, params)


def _multiply_blocks(values: np.ndarray, scales: np.ndarray, params: CodecParams) -> bool:
    v = np.moveaxis(values, params.block_axis, -1)
    s = np.moveaxis(scales, params.block_axis, -1)
    n, size = v.shape[-1], params.block_size
    full = n // size
    if full:
        main = v[..., : full * size]
        blocks = main.reshape(*main.shape[:-1], full, size)
        if not np.shares_memory(blocks, values):
            return False
        np.multiply(blocks, s[..., :full, None], out=blocks)
    if n % size:
        tail = v[..., full * size :]
        np.multiply(tail, s[..., full : full + 1], out=tail)
    return True


def _check_codec_state(codebook: torch.Tensor, scales: torch.Tensor, shape: Sequence[int], params: CodecParams) -> None:
    if codebook.dtype != torch.float32 or codebook.numel() != (1 << params.bits):
        raise ValueError("codebook must be float32 with 2**bits entries")
    if tuple(scales.shape) != scales_shape(shape, params):
        raise ValueError(f"scales shape {tuple(scales.shape)} does not match {scales_shape(shape, params)}")


def reconstruct_from_codes(
    codes: torch.Tensor | np.ndarray,
    codebook: torch.Tensor,
    scales: torch.Tensor,
    params: CodecParams,
) -> torch.Tensor:
    """Canonical reconstruction from unpacked integer codes (shape = tensor shape)."""
    codes_np = codes.numpy() if isinstance(codes, torch.Tensor) else codes
    shape = tuple(codes_np.shape)
    _check_codec_state(codebook, scales, shape, params)
    values = codebook.detach().numpy()[codes_np.astype(np.uint8, copy=False)]  # float32 gather
    scales32 = scales.detach().numpy().astype(np.float32)  # float16 -> float32 is exact
    if not _multiply_blocks_inplace(values, scales32, params):  # the one float32 multiply
        values = (torch.from_numpy(values) * expand_scales(scales, shape, params)).numpy()
    return torch.from_numpy(values).to(TORCH_DTYPES[params.dtype])  # the one rounding (RNE)


def reconstruct(
    packed_codes: np.ndarray | torch.Tensor,
    codebook: np.ndarray | torch.Tensor,
    scales: np.ndarray | torch.Tensor,
    shape: Sequence[int],
    params: CodecParams,
) -> torch.Tensor:
    """Unpack codes and reconstruct; raises ValueError on any inconsistency.

    Uses the fused kernel (native.py) where it applies; otherwise, and as the
    reference the tests compare it with, the numpy path of
    :func:`reconstruct_from_codes`.
    """
    shape = tuple(int(d) for d in shape)
    if not 0 <= params.block_axis < len(shape):
        raise ValueError(f"block_axis {params.block_axis} out of range for shape {shape}")
    packed = packed_codes.numpy() if isinstance(packed_codes, torch.Tensor) else packed_codes
    count = math.prod(shape)
    cb = codebook if isinstance(codebook, torch.Tensor) else torch.from_numpy(np.asarray(codebook))
    sc = scales if isinstance(scales, torch.Tensor) else torch.from_numpy(np.asarray(scales))
    if sc.dtype != torch.float16:
        raise ValueError("scales must be float16")
    if native.applies(params, shape):
        _check_codec_state(cb, sc, shape, params)
        flat = native.decode(packed, cb.detach().numpy(), sc.detach().numpy(), shape, params)
        out = torch.from_numpy(flat.view(np.int16)).view(torch.bfloat16) if params.dtype == "bfloat16" else torch.from_numpy(flat)
        return out.reshape(shape)
    codes = torch.from_numpy(unpack_codes(packed, params.bits, count)).reshape(shape)
    return reconstruct_from_codes(codes, cb, sc, params)


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    """C-order little-endian bytes of a tensor (bf16 through its 16-bit pattern)."""
    t = tensor.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().astype("<i2", copy=False).tobytes()
    arr = t.numpy()
    return arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()


def digest_header(dtype_name: str, shape: Sequence[int]) -> bytes:
    """Unambiguous header: domain, dtype name, comma-separated shape, each line-terminated."""
    return DIGEST_DOMAIN + dtype_name.encode() + b"\n" + ",".join(str(int(d)) for d in shape).encode() + b"\n"


def digest_of_bytes(dtype_name: str, shape: Sequence[int], data: bytes | memoryview | np.ndarray) -> str:
    h = hashlib.sha256(digest_header(dtype_name, shape))
    h.update(data)
    return "sha256:" + h.hexdigest()


def tensor_buffer(tensor: torch.Tensor) -> np.ndarray:
    """A little-endian numpy view of the tensor's bytes (no copy on little-endian machines)."""
    t = tensor.detach().contiguous().cpu()
    arr = t.view(torch.int16).numpy() if t.dtype == torch.bfloat16 else t.numpy()
    le = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    return np.ascontiguousarray(le).reshape(-1).view(np.uint8)


def tensor_digest(tensor: torch.Tensor) -> str:
    """SHA-256 over the header (dtype, shape) and the tensor's little-endian bytes."""
    return digest_of_bytes(DTYPE_NAMES[tensor.dtype], tuple(tensor.shape), tensor_buffer(tensor))
