"""Per-block scales and data-free coding of one tensor.

Scales are float16 (exactly widened to float32 at reconstruction). A block's scale
starts as its absolute maximum, so normalised weights lie in [-1, 1] where the
codebook is learned; a few alternating rounds then refit every block's scale by
least squares for its codes and re-assign codes for the new scale.
"""

from __future__ import annotations

import torch

from ..codec.codebook import assign_codes, learn_codebook
from ..codec.encoded import EncodedTensor
from ..codec.params import CodecParams
from ..codec.reconstruct import expand_scales


def blocks_last(weight: torch.Tensor, params: CodecParams) -> torch.Tensor:
    """View with the block axis last, padded with zeros to whole blocks: (..., nblocks, B)."""
    w = weight.movedim(params.block_axis, -1).to(torch.float32)
    n = w.shape[-1]
    pad = (-n) % params.block_size
    if pad:
        w = torch.nn.functional.pad(w, (0, pad))
    return w.reshape(*w.shape[:-1], -1, params.block_size)


def to_scale_layout(block_scales: torch.Tensor, params: CodecParams) -> torch.Tensor:
    """(..., nblocks) with block axis last -> the manifest's scale layout."""
    return block_scales.movedim(-1, params.block_axis).contiguous()


def absmax_scales(weight: torch.Tensor, params: CodecParams) -> torch.Tensor:
    """float16 block absmax in the manifest's layout; tiny blocks never round to inf."""
    amax = blocks_last(weight, params).abs().amax(dim=-1)
    amax = amax.clamp(max=65504.0)
    return to_scale_layout(amax.to(torch.float16), params)


def normalise(weight: torch.Tensor, scales: torch.Tensor, params: CodecParams) -> torch.Tensor:
    s = expand_scales(scales, tuple(weight.shape), params)
    return torch.where(s != 0, weight.to(torch.float32) / torch.where(s != 0, s, 1.0), 0.0)


def refit_scales(weight: torch.Tensor, values: torch.Tensor, params: CodecParams) -> torch.Tensor:
    """Least-squares scale per block for fixed codebook values: sum(w c) / sum(c c)."""
    wb = blocks_last(weight, params)
    cb = blocks_last(values, params)
    num = (wb * cb).sum(-1)
    den = (cb * cb).sum(-1)
    s = torch.where(den > 0, num / den.clamp_min(1e-30), torch.zeros_like(num))
    return to_scale_layout(s.clamp(-65504.0, 65504.0).to(torch.float16), params)


def encode_datafree(weight: torch.Tensor, params: CodecParams, refits: int = 2) -> tuple[EncodedTensor, torch.Tensor]:
    """Code a tensor without data: k-means codebook, absmax then refitted scales.

    Returns the encoded tensor and its unpacked codes.
    """
    w = weight.detach().to(torch.float32)
    scales = absmax_scales(w, params)
    normed = normalise(w, scales, params)
    codebook = learn_codebook(normed, params.bits, weights=normed.abs() + 0.05)
    codes = assign_codes(normed, codebook)
    for _ in range(refits):
        scales = refit_scales(w, codebook[codes.long()], params)
        codes = assign_codes(normalise(w, scales, params), codebook)
    return EncodedTensor.from_codes(codes, codebook, scales, params), codes
