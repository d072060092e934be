"""The canonical reconstruction and the tensor digest for torch callers.

The rule and both of its implementations (the fused kernel and the numpy
reference) live in :mod:`canonical`, which needs numpy only; this module adapts
them to torch tensors for the compressor and the loader, and holds the torch
dtype names. Nothing here computes a weight differently: a bf16 result is the
canonical module's uint16 bit patterns, viewed as torch.bfloat16.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .canonical import (
    DIGEST_DOMAIN,
    digest_header,
    digest_of_bytes,
    little_endian_bytes,
    num_blocks,
    reconstruct_array,
    reconstruct_codes_array,
    scales_shape,
)
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


def expand_scales(scales: torch.Tensor, shape: Sequence[int], params: CodecParams) -> torch.Tensor:
    """float32 scale for every element: scale[.., j // block_size, ..] along block_axis."""
    axis = params.block_axis
    wide = scales.to(torch.float32)  # float16 -> float32 is exact
    wide = torch.repeat_interleave(wide, params.block_size, dim=axis)
    return wide.narrow(axis, 0, shape[axis])


def _as_numpy(value: np.ndarray | torch.Tensor) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _to_torch(storage: np.ndarray, dtype: str) -> torch.Tensor:
    """The storage array as a torch tensor of the reconstruction dtype (bf16 bit patterns viewed, not converted)."""
    if dtype == "bfloat16":
        return torch.from_numpy(np.ascontiguousarray(storage).view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(storage))


def reconstruct_from_codes(
    codes: torch.Tensor | np.ndarray,
    codebook: torch.Tensor,
    scales: torch.Tensor,
    params: CodecParams,
) -> torch.Tensor:
    """Canonical reconstruction from unpacked integer codes (shape = tensor shape)."""
    out = reconstruct_codes_array(_as_numpy(codes), _as_numpy(codebook), _as_numpy(scales), params)
    return _to_torch(out, params.dtype)


def reconstruct(
    packed_codes: np.ndarray | torch.Tensor,
    codebook: np.ndarray | torch.Tensor,
    scales: np.ndarray | torch.Tensor,
    shape: Sequence[int],
    params: CodecParams,
) -> torch.Tensor:
    """Unpack codes and reconstruct; raises ValueError on any inconsistency (see canonical.reconstruct_array)."""
    out = reconstruct_array(_as_numpy(packed_codes), _as_numpy(codebook), _as_numpy(scales), shape, params)
    return _to_torch(out, params.dtype)


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    """C-order little-endian bytes of a tensor (bf16 through its 16-bit pattern)."""
    t = tensor.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().astype("<i2", copy=False).tobytes()
    arr = t.numpy()
    return arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()


def tensor_buffer(tensor: torch.Tensor) -> np.ndarray:
    """A little-endian numpy view of the tensor's bytes (no copy on little-endian machines)."""
    t = tensor.detach().contiguous().cpu()
    return little_endian_bytes(t.view(torch.int16).numpy() if t.dtype == torch.bfloat16 else t.numpy())


def tensor_digest(tensor: torch.Tensor) -> str:
    """SHA-256 over the header (dtype, shape) and the tensor's little-endian bytes."""
    return digest_of_bytes(DTYPE_NAMES[tensor.dtype], tuple(tensor.shape), tensor_buffer(tensor))


__all__ = [
    "DIGEST_DOMAIN", "DTYPE_NAMES", "TORCH_DTYPES", "digest_header", "digest_of_bytes", "expand_scales", "num_blocks",
    "reconstruct", "reconstruct_from_codes", "scales_shape", "tensor_buffer", "tensor_bytes", "tensor_digest",
]  # fmt: skip
