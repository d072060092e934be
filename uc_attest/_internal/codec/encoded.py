"""An encoded tensor: the codec state that a pack stores instead of weights."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .bitpack import pack_codes
from .params import CodecParams
from .reconstruct import reconstruct_from_codes, scales_shape


@dataclass(frozen=True)
class EncodedTensor:
    """Packed codes, codebook and block scales of one tensor, plus its parameters."""

    shape: tuple[int, ...]
    params: CodecParams
    packed_codes: np.ndarray  # uint8, ceil(numel * bits / 8)
    codebook: torch.Tensor  # float32 [2**bits], sorted ascending
    scales: torch.Tensor  # float16, scales_shape(shape, params)

    @classmethod
    def from_codes(
        cls, codes: torch.Tensor, codebook: torch.Tensor, scales: torch.Tensor, params: CodecParams
    ) -> "EncodedTensor":
        shape = tuple(codes.shape)
        if tuple(scales.shape) != scales_shape(shape, params):
            raise ValueError("scales shape does not match the tensor")
        packed = pack_codes(codes.reshape(-1).to(torch.uint8).numpy(), params.bits)
        return cls(shape, params, packed, codebook.to(torch.float32).contiguous(), scales.to(torch.float16).contiguous())

    def codec_nbytes(self) -> int:
        """All bytes the pack stores for this tensor (codes, scales, codebook)."""
        return int(self.packed_codes.nbytes + self.scales.numel() * 2 + self.codebook.numel() * 4)

    def numel(self) -> int:
        return math.prod(self.shape)


def reconstruct_encoded(enc: EncodedTensor, codes: torch.Tensor) -> torch.Tensor:
    """Reconstruct from already-unpacked codes (used by the compressor, which has them)."""
    return reconstruct_from_codes(codes.reshape(enc.shape), enc.codebook, enc.scales, enc.params)
