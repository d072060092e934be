"""The real coder's error in every (width, block size) option, for ``uc compress --target-bpw``.

Why the real coder: the allocation used to price options with a cheap coder
(absmax scales, nearest-entry rounding), and GPTQ's gain over that coder
differs by tensor family from 0.7x (q_proj) to 4x (v_proj) on SmolLM2 (issue
28), so the knapsack paid for the wrong tensors. Here options are coded by
gptq.py exactly as ``uc compress`` codes a map (clip search, importance
candidates, the GPTQ sweep, the incoherence transform where it lowers the
error, the bf16-rounded canonical reconstruction), on an evenly strided sample
of each tensor's rows: for a fixed input Hessian H the rows are coded
independently, so a sample estimates the whole without bias. Maps that read
one input (q, k, v; gate, up) share H and are swept together, as the coder
sweeps them.

What it costs, and the one approximation: coding all 18 options in both
domains took about 1 s per option and map on the loaded 2-core machine, far
over the time budget. So the domain (plain or incoherence) is chosen per map at
the reference option, as the coder chooses it, and only a cross of the grid is
coded: every width at the reference block size and every block size at the
reference width. The rest follows from separability, damage(b, s) =
damage(b, s_ref) x damage(b_ref, s) / damage(b_ref, s_ref): the block size
changes how well the scales follow the weights, which is a ratio that varies
little with the width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..codec.incoherence_torch import forward_transform, transform_hessian
from ..codec.params import CodecParams, HadamardTransform
from ..codec.reconstruct import reconstruct_from_codes
from .gptq import PreparedHessian, gptq_quantize_group, hadamard_for_width, prepare_hessian, prepared_hessian, single_threaded
from .options import CompressOptions

OPTION_BITS = (3, 4, 5, 6, 7, 8)
OPTION_BLOCKS = (32, 64, 128)
ESTIMATE_ELEMENTS = 1 << 14  # weights per tensor on which the options' coding errors are measured (a row sample)
Option = tuple[int, int]  # (bits, block size)


def sampled_rows(rows: torch.Tensor, max_elements: int = ESTIMATE_ELEMENTS) -> tuple[torch.Tensor, float]:
    """The indices of an evenly strided subset of ``rows`` (a [rows, input] matrix) and the factor back to all rows."""
    step = max(1, rows.numel() // max_elements)
    index = torch.arange(0, rows.shape[0], step)
    return index, rows.shape[0] / index.numel()


def as_rows(tensor: torch.Tensor, block_axis: int) -> torch.Tensor:
    """The tensor as a 2-D float32 [rows, input] matrix with its block axis last (how the coder sees it)."""
    return tensor.movedim(block_axis, -1).reshape(-1, tensor.shape[block_axis]).to(torch.float32)


def reference_option(bits: tuple[int, ...], blocks: tuple[int, ...]) -> Option:
    """The grid's centre: where the domain is chosen and the cross of coded options meets."""
    return bits[(len(bits) - 1) // 2], blocks[len(blocks) // 2]


def measured_options(bits: tuple[int, ...], blocks: tuple[int, ...]) -> list[Option]:
    """The cross of the grid that is really coded: every width at the reference block size, every block size at the reference width."""
    ref_bits, ref_block = reference_option(bits, blocks)
    return sorted({(b, ref_block) for b in bits} | {(ref_bits, s) for s in blocks})


def complete_grid(measured: dict[Option, float], bits: tuple[int, ...], blocks: tuple[int, ...]) -> dict[Option, float]:
    """Every option's damage from the measured cross, by separability (see the module docstring)."""
    ref_bits, ref_block = reference_option(bits, blocks)
    centre = measured[(ref_bits, ref_block)]
    out = {}
    for b in bits:
        for s in blocks:
            if (b, s) in measured:
                out[(b, s)] = measured[(b, s)]
            else:
                out[(b, s)] = measured[(b, ref_block)] * (measured[(ref_bits, s)] / centre if centre > 0 else 1.0)
    return out


@dataclass
class _Domain:
    """One coding domain: its Hessian, factorised once for every option, and its transform (None: plain)."""

    hessian: torch.Tensor | None
    prepared: PreparedHessian
    transform: HadamardTransform | None

    def values(self, rows: torch.Tensor) -> torch.Tensor:
        return rows if self.transform is None else forward_transform(rows, self.transform, 1)


def _domains(cols: int, hessian: torch.Tensor | None, options: CompressOptions) -> list[_Domain]:
    """The plain domain, and the incoherence domain where the coder would also try it (``--incoherence auto``)."""
    out = [_Domain(hessian, prepare_hessian(hessian, cols, options.damp, options.act_order), None)]
    transform = hadamard_for_width(cols, options.seed) if options.incoherence == "auto" and hessian is not None else None
    if transform is not None and hessian is not None:
        rotated = transform_hessian(hessian, transform).to(torch.float32)
        out.append(_Domain(rotated, prepare_hessian(rotated, cols, options.damp, options.act_order), transform))
    return out


def _code(rows: list[torch.Tensor], domain: _Domain, option_list: list[Option], options: CompressOptions) -> list[torch.Tensor]:
    """D = canonical reconstruction - rows, for each of ``rows`` coded in its option of ``option_list``, all in one sweep in ``domain``."""
    params = [CodecParams(bits=o[0], block_size=o[1], block_axis=1, dtype=options.dtype, transform=domain.transform) for o in option_list]
    with single_threaded():  # many small tensor operations on a row sample: a thread pool only adds barrier waits
        coded = gptq_quantize_group([domain.values(r) for r in rows], params, domain.hessian, damp=options.damp,
                                    act_order=options.act_order, seed=options.seed, prepared=domain.prepared)  # fmt: skip
        return [reconstruct_from_codes(codes, enc.codebook, enc.scales, enc.params).to(torch.float32) - r
                for (enc, codes), r in zip(coded, rows, strict=True)]  # fmt: skip


def _criterion(d: torch.Tensor, h: torch.Tensor) -> float:
    d64 = d.to(torch.float64)
    return float(((d64 @ h) * d64).sum())


@dataclass
class GroupCoding:
    """What the real coder does to one group's row samples: D per map and option, and the domain each map was given."""

    differences: list[dict[Option, torch.Tensor]]
    # per map: True (incoherence domain) or False (plain) where both were tried, None where there was no choice
    # (no Hessian, no transform for the width, or --incoherence off)
    rotated: list[bool | None]


def group_differences(rows: list[torch.Tensor], hessian: torch.Tensor | None, options: CompressOptions,
                      option_list: list[Option], reference: Option) -> GroupCoding:  # fmt: skip
    """Per map of ``rows`` (maps reading one input, H = identity where None) and option, D as the real coder codes it.

    The domain of each map is chosen at ``reference`` by the coder's own
    criterion (the canonical error under the damped Hessian, as
    gptq_quantize_group's "auto" chooses per map) and kept for the other
    options. Every other option of every map in one domain is coded in one
    sweep (rows are independent for a fixed H; each stacked matrix keeps its
    own codebook, scales and block size), so a group costs two sweeps at the
    reference and at most two for the rest, whatever the number of options;
    each Hessian is factorised once per domain and shared by every option.
    """
    domains = _domains(rows[0].shape[1], hessian, options)
    at_reference = [_code(rows, domain, [reference] * len(rows), options) for domain in domains]
    choice = [0] * len(rows)  # one domain: nothing to choose, and no float64 criterion to build (3 s of SmolLM2's pass)
    if len(domains) > 1:
        criterion = prepared_hessian(torch.eye(rows[0].shape[1]) if hessian is None else hessian, options.damp)
        choice = [min(range(len(domains)), key=lambda j: _criterion(at_reference[j][m], criterion)) for m in range(len(rows))]
    out: list[dict[Option, torch.Tensor]] = [{reference: at_reference[choice[m]][m]} for m in range(len(rows))]
    rest = [o for o in option_list if o != reference]
    for j, domain in enumerate(domains):
        pairs = [(m, o) for o in rest for m in range(len(rows)) if choice[m] == j]
        if not pairs:
            continue
        for (m, o), d in zip(pairs, _code([rows[m] for m, _ in pairs], domain, [o for _, o in pairs], options), strict=True):
            out[m][o] = d
    rotated = [domains[c].transform is not None if len(domains) > 1 else None for c in choice]
    return GroupCoding(out, rotated)


def coding_differences(rows: torch.Tensor, hessian: torch.Tensor | None, options: CompressOptions,
                       option_list: list[Option]) -> dict[Option, torch.Tensor]:  # fmt: skip
    """One map alone, every option of ``option_list`` with its own domain choice: exactly gptq_quantize_group's coding."""
    return {o: group_differences([rows], hessian, options, [o], o).differences[0][o] for o in option_list}


def row_errors(d: torch.Tensor, hessian: torch.Tensor) -> torch.Tensor:
    """The output error ``D_i H D_i^T`` of every row of a coding difference ``d``."""
    return ((d @ hessian.to(torch.float32)) * d).sum(1).clamp_min(0.0)
