"""Calibrated coding of the all-MiniLM-L6-v2 encoder, with per-tensor widths chosen by measured sensitivity.

`uc compress` calibrates causal LMs block by block. For the encoder in the
quality benchmark the bench takes input statistics once from the unquantized
model over the calibration sentences (never the evaluation sentences) and runs
the same coder (`gptq_quantize`, with the codebook refit) on each block linear
map. On top of one uniform width per row it can choose a width per tensor:

1. for every tensor and every candidate width, code that tensor alone and
   measure the damage 1 - mean cosine of the mean-pooled embeddings against the
   original model, on a held-out slice of the *calibration* sentences;
2. pick one width per tensor minimising the summed damage under a budget of
   effective bits per weight (a multiple-choice knapsack, solved exactly by
   dynamic programming over the budget in small steps);
3. install the already coded tensors of the chosen widths.

Summing single-tensor damages assumes they add; the evaluation sentences then
measure what the mix really does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

Embed = Callable[[torch.nn.Module], torch.Tensor]


@dataclass(frozen=True)
class CodedTensor:
    """One tensor coded at one width: its canonical reconstruction and what it costs on disk."""

    weight: torch.Tensor
    bits_on_disk: int


def encoder_hessians(model: torch.nn.Module, names: Sequence[str], batches: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Mean input second moment X^T X / n of each named linear map over real (unpadded) tokens, batch by batch."""
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    keep: list[torch.Tensor] = []

    def hook_for(name: str) -> Callable[..., None]:
        def hook(_m: torch.nn.Module, inputs: tuple[Any, ...]) -> None:
            x = inputs[0].reshape(-1, inputs[0].shape[-1])[keep[0]].to(torch.float32)
            sums[name] = sums.get(name, 0) + x.t() @ x  # type: ignore[assignment]
            counts[name] = counts.get(name, 0) + x.shape[0]

        return hook

    handles = [model.get_submodule(n).register_forward_pre_hook(hook_for(n)) for n in names]
    try:
        with torch.no_grad():
            for batch in batches:
                keep[:] = [batch["attention_mask"].reshape(-1).bool()]
                model(**batch)
    finally:
        for h in handles:
            h.remove()
    return {n: sums[n] / counts[n] for n in names}


def code_tensor(weight: torch.Tensor, hessian: torch.Tensor, tokens: int, bits: int) -> CodedTensor:
    """uc_attest's calibrated coder on one map (block 64 along the input axis, codebook refit on)."""
    from uc_attest.codec.encoded import reconstruct_encoded
    from uc_attest.codec.params import CodecParams
    from uc_attest.compress.gptq import gptq_quantize
    from uc_attest.compress.hessian import shrink

    params = CodecParams(bits=bits, block_size=64, block_axis=1, dtype="float32")
    enc, codes = gptq_quantize(weight, params, shrink(hessian, tokens), refit=True)
    size = 8 * (enc.packed_codes.nbytes + enc.scales.numel() * 2 + enc.codebook.numel() * 4)
    return CodedTensor(reconstruct_encoded(enc, codes).to(weight.dtype), size)


def damage(model: torch.nn.Module, reference: torch.Tensor, embed: Embed) -> float:
    """1 - mean cosine of ``model``'s embeddings against ``reference`` (the sensitivity measure)."""
    cos = torch.nn.functional.cosine_similarity(reference, embed(model), dim=-1)
    return float(1.0 - cos.mean())


def measure_sensitivity(
    model: torch.nn.Module, weights: dict[str, torch.nn.Parameter], coded: dict[str, dict[int, CodedTensor]], embed: Embed,
) -> dict[str, dict[int, float]]:
    """Damage of coding each tensor alone at each width, measured with ``embed`` (calibration sentences)."""
    reference = embed(model)
    out: dict[str, dict[int, float]] = {}
    with torch.no_grad():
        for name, param in weights.items():
            original = param.detach().clone()
            out[name] = {}
            for bits, ct in coded[name].items():
                param.copy_(ct.weight)
                out[name][bits] = damage(model, reference, embed)
            param.copy_(original)
    return out


def allocate(
    sensitivity: dict[str, dict[int, float]], cost: dict[str, dict[int, int]], weights: int, budget_bpw: float, steps: int = 4000,
) -> dict[str, int]:
    """Widths minimising the summed damage with total bits <= budget_bpw * weights (multiple-choice knapsack).

    The budget is cut into ``steps`` equal units and each option's cost rounded
    up to whole units, so the chosen mix never exceeds the budget.
    """
    budget = budget_bpw * weights
    unit = budget / steps
    names = sorted(sensitivity)
    inf = float("inf")
    best = [0.0] + [inf] * steps  # best[u]: least damage using exactly <= u units so far
    choice: list[list[tuple[int, int] | None]] = []
    for name in names:
        nxt = [inf] * (steps + 1)
        pick: list[tuple[int, int] | None] = [None] * (steps + 1)
        for bits, d in sensitivity[name].items():
            units = int(-(-cost[name][bits] // unit))
            for u in range(units, steps + 1):
                if best[u - units] + d < nxt[u]:
                    nxt[u] = best[u - units] + d
                    pick[u] = (bits, u - units)
        best = nxt
        choice.append(pick)
    u = min(range(steps + 1), key=lambda k: best[k])
    if best[u] == inf:
        raise ValueError(f"no width mix fits {budget_bpw} bits per weight")
    widths: dict[str, int] = {}
    for name, pick in zip(reversed(names), reversed(choice)):
        bits, u = pick[u]  # type: ignore[misc]
        widths[name] = bits
    return widths


def install(weights: dict[str, torch.nn.Parameter], coded: dict[str, dict[int, CodedTensor]], widths: dict[str, int]) -> float:
    """Copy the chosen coded tensors into the model; returns effective bits per weight."""
    total = 0
    with torch.no_grad():
        for name, param in weights.items():
            ct = coded[name][widths[name]]
            param.copy_(ct.weight)
            total += ct.bits_on_disk
    return total / sum(p.numel() for p in weights.values())
