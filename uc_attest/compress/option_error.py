"""The real coder's error in every (width, block size) option, per output row, for ``uc compress --target-bpw``.

Why the real coder: the allocation used to price options with a cheap coder
(absmax scales, nearest-entry rounding), and GPTQ's gain over that coder
differs by tensor family from 0.7x (q_proj) to 4x (v_proj) on SmolLM2 (issue
28), so the knapsack paid for the wrong tensors. Here each option is coded by
gptq.py exactly as ``uc compress`` codes it (clip search, importance
candidates, the GPTQ sweep, the incoherence transform where it lowers the
error, the bf16-rounded canonical reconstruction), on an evenly strided sample
of the tensor's rows: for a fixed input Hessian H the rows are coded
independently, so a sample estimates the whole without bias.

What comes back is the per-row output error ``e_i = D_i H D_i^T`` of the
canonical reconstruction (D = reconstruction - weight), which the sensitivity
(sensitivity.py) weights by how much each output channel costs at the model's
output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..codec.incoherence_torch import forward_transform, transform_hessian
from ..codec.params import CodecParams, HadamardTransform
from ..codec.reconstruct import reconstruct_from_codes
from .gptq import PreparedHessian, gptq_quantize_group, hadamard_for_width, prepare_hessian, prepared_hessian
from .options import CompressOptions

OPTION_BITS = (3, 4, 5, 6, 7, 8)
OPTION_BLOCKS = (32, 64, 128)
ESTIMATE_ELEMENTS = 1 << 15  # weights per tensor on which each option's coding error is measured (a row sample)
Option = tuple[int, int]  # (bits, block size)


def sampled_rows(rows: torch.Tensor, max_elements: int = ESTIMATE_ELEMENTS) -> tuple[torch.Tensor, float]:
    """The indices of an evenly strided subset of ``rows`` (a [rows, input] matrix) and the factor back to all rows."""
    step = max(1, rows.numel() // max_elements)
    index = torch.arange(0, rows.shape[0], step)
    return index, rows.shape[0] / index.numel()


def as_rows(tensor: torch.Tensor, block_axis: int) -> torch.Tensor:
    """The tensor as a 2-D float32 [rows, input] matrix with its block axis last (how the coder sees it)."""
    return tensor.movedim(block_axis, -1).reshape(-1, tensor.shape[block_axis]).to(torch.float32)


@dataclass
class _Domain:
    """One coding domain of a row sample: the values the coder codes, its factorised Hessian, the transform (or none)."""

    rows: torch.Tensor
    hessian: torch.Tensor | None
    prepared: PreparedHessian
    transform: HadamardTransform | None


def _domains(rows: torch.Tensor, hessian: torch.Tensor | None, options: CompressOptions) -> list[_Domain]:
    """The plain domain, and the incoherence domain where the coder would also try it (``--incoherence auto``)."""
    cols = rows.shape[1]
    out = [_Domain(rows, hessian, prepare_hessian(hessian, cols, options.damp, options.act_order), None)]
    transform = hadamard_for_width(cols, options.seed) if options.incoherence == "auto" and hessian is not None else None
    if transform is not None and hessian is not None:
        rotated = transform_hessian(hessian, transform).to(torch.float32)
        out.append(_Domain(forward_transform(rows, transform, 1), rotated,
                           prepare_hessian(rotated, cols, options.damp, options.act_order), transform))  # fmt: skip
    return out


def coding_differences(rows: torch.Tensor, hessian: torch.Tensor | None, options: CompressOptions,
                       option_list: list[Option]) -> dict[Option, torch.Tensor]:  # fmt: skip
    """Per option, D = canonical reconstruction - ``rows`` for the real coder's coding of ``rows`` (H = identity where None).

    Each option is coded in every domain the coder would try, and keeps the
    one with the lower canonical error under the damped Hessian, as
    gptq_quantize_group's "auto" does per map; the Hessians are factorised once per domain and
    shared by all options.
    """
    # the coder's own criterion between domains: the canonical error under the damped Hessian (gptq_quantize_group)
    h = prepared_hessian(torch.eye(rows.shape[1]) if hessian is None else hessian, options.damp)
    domains = _domains(rows, hessian, options)
    out: dict[Option, torch.Tensor] = {}
    for bits, size in option_list:
        best: tuple[float, torch.Tensor] | None = None
        for domain in domains:
            params = CodecParams(bits=bits, block_size=size, block_axis=1, dtype=options.dtype, transform=domain.transform)
            enc, codes = gptq_quantize_group([domain.rows], [params], domain.hessian, damp=options.damp,
                                             act_order=options.act_order, seed=options.seed, prepared=domain.prepared)[0]  # fmt: skip
            d = reconstruct_from_codes(codes, enc.codebook, enc.scales, enc.params).to(torch.float32) - rows
            total = float(((d.to(torch.float64) @ h) * d.to(torch.float64)).sum())
            if best is None or total < best[0]:
                best = (total, d)
        assert best is not None
        out[(bits, size)] = best[1]
    return out


def row_errors(rows: torch.Tensor, hessian: torch.Tensor, options: CompressOptions,
               option_list: list[Option]) -> dict[Option, torch.Tensor]:  # fmt: skip
    """Per option, the output error ``D_i H D_i^T`` of every row of ``rows`` as the real coder codes them under ``hessian``."""
    h = hessian.to(torch.float32)
    return {o: ((d @ h) * d).sum(1).clamp_min(0.0) for o, d in coding_differences(rows, hessian, options, option_list).items()}
