"""How one tensor is coded, shared by the data-free and the calibrated paths.

Both ``pipeline.py`` (which dispatches to the calibrated path) and
``calibrated.py`` need these; living here, neither imports the other's module
for them, so there is no import circle between the two.
"""

from __future__ import annotations

import torch

from ..architecture import TensorRole
from ..codec.params import CodecParams
from ..codec.reconstruct import TORCH_DTYPES, reconstruct, tensor_digest
from ..pack.writer import PackWriter
from .blockscale import encode_datafree
from .options import CompressOptions


def codec_params(key: str, role: TensorRole, options: CompressOptions) -> CodecParams:
    assert role.block_axis is not None
    return CodecParams(bits=options.bits_for_key(key), block_size=options.block_size_for_key(key), block_axis=role.block_axis,
                       dtype=options.dtype)  # fmt: skip


def passthrough_tensor(tensor: torch.Tensor, options: CompressOptions) -> torch.Tensor:
    """Floating passthrough tensors take the reconstruction dtype; integers stay as they are."""
    if tensor.is_floating_point() and tensor.dtype != TORCH_DTYPES[options.dtype]:
        return tensor.to(TORCH_DTYPES[options.dtype])
    return tensor


def add_datafree(writer: PackWriter, name: str, weight: torch.Tensor, role: TensorRole, options: CompressOptions) -> None:
    params = codec_params(name, role, options)
    enc, _ = encode_datafree(weight, params)
    canonical = reconstruct(enc.packed_codes, enc.codebook, enc.scales, enc.shape, params)
    writer.add_quantized(name, enc, role.role, tensor_digest(canonical))
