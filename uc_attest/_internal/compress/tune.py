"""Tuning a coded block's grids against the full-precision model's outputs, with every code fixed.

Why: GPTQ and the least-squares refits fit each linear map alone, to its own
output error under its input statistics. What lies between the maps (attention
softmax, activation functions, norms, residual sums) and the error that the
already coded blocks before it pass on are invisible to them. Once every map of
a block has its codes, the block's continuous codec state (each map's codebook
entries and block scales) and the maps' biases are tuned by gradient descent
(Adam) so that the block, fed the inputs that the coded blocks before it
produce, reproduces what the full-precision model outputs for the same tokens.
The codes do not change, so neither does the number of bits per weight.

The result is codec state like any other: the codebook is sorted again (codes
renumbered to match), scales are rounded to float16 and biases to their stored
dtype, and the block is then run with the *canonical reconstruction* of that
state. The tuning is kept only if that block's output error over the tuning
batches is lower than with the untuned state, so it can never make a block
worse on its own objective, and what is measured is exactly what ships.

Measured on all-MiniLM-L6-v2 coded at 4 bits (bench/quality.py's encoder, on
the 256 held-out calibration sentences, never the evaluation ones): the mean
embedding damage 1 - cos fell from 8.28e-3 to 7.01e-3 (-15 %) with two epochs
over 1,024 calibration sentences; on the evaluation sentences the tuned mixes
have 15-16 % less damage than the same mixes untuned (docs/RESULTS.md).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..codec.encoded import EncodedTensor
from ..codec.incoherence_torch import tuning_inverse
from ..codec.reconstruct import expand_scales, reconstruct_from_codes

CODEBOOK_LR = 1e-4  # Adam step for codebook entries (block-normalised units, about [-1, 1])
SCALE_LR = 1e-3  # Adam step for each block scale's relative change
BIAS_LR = 1e-5  # Adam step for biases (absolute)


@dataclass(frozen=True)
class CodedMap:
    """One coded linear map of the block: where its weight sits in the block, its codec state and its codes."""

    weight_path: str  # parameter path inside the block, e.g. "self_attn.q_proj.weight"
    encoded: EncodedTensor
    codes: torch.Tensor  # unpacked integer codes, shape encoded.shape
    bias_path: str | None = None  # the map's bias inside the block, tuned along with it when given
    bias_dtype: torch.dtype | None = None  # the dtype the bias is stored in (None: that of the block's parameter)


@dataclass(frozen=True)
class TuneResult:
    """The tuned state (or the untouched one, if tuning did not lower the block's error)."""

    encoded: dict[str, EncodedTensor]  # by weight path
    biases: dict[str, torch.Tensor]  # by bias path, in the bias's stored dtype (CodedMap.bias_dtype)
    error_before: float  # mean squared output error over the tuning batches, untuned canonical state
    error_after: float  # the same with the tuned canonical state
    accepted: bool


class _EntryLookup(torch.autograd.Function):
    """``codebook[codes]`` whose gradient for the codebook is one weighted bincount of the codes.

    Why: advanced indexing's backward accumulates with ``index_put_``, which on
    the CPU took 17 ms a map per step, a quarter of the whole tuning time
    (torch.profiler on SmolLM2's first block). A bincount sums the same
    gradients per entry in one pass, in float64, in the codes' order, so it is
    deterministic too.
    """

    @staticmethod
    def forward(ctx: Any, codebook: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        flat = codes.reshape(-1)
        ctx.save_for_backward(flat)
        ctx.entries = codebook.numel()
        return codebook.index_select(0, flat).reshape(codes.shape)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (flat,) = ctx.saved_tensors
        sums = torch.bincount(flat, weights=grad.reshape(-1).to(torch.float64), minlength=ctx.entries)
        return sums.to(grad.dtype), None


def _entries(codebook: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """codebook[codes], differentiable in the codebook: by bincount on the CPU; elsewhere by indexing, whose
    accumulation the device already parallelises."""
    return _EntryLookup.apply(codebook, codes) if codebook.device.type == "cpu" else codebook[codes]


def _differentiable_weight(codes: torch.Tensor, codebook: torch.Tensor, scales: torch.Tensor, enc: EncodedTensor) -> torch.Tensor:
    """codebook[code] * scale in float32 (then the incoherence inverse, if any), with gradients: the canonical formula
    before its final rounding, up to float32 rounding in the inverse (``tuning_inverse``)."""
    products = _entries(codebook, codes) * expand_scales(scales, enc.shape, enc.params)
    return products if enc.params.transform is None else tuning_inverse(products, enc.params)


@contextlib.contextmanager
def _overridden(block: nn.Module, values: dict[str, torch.Tensor]) -> Iterator[None]:
    """Run the block with plain tensors in place of some of its parameters (restored on exit)."""
    saved: list[tuple[nn.Module, str, nn.Parameter]] = []
    try:
        for path, value in values.items():
            owner_path, _, attr = path.rpartition(".")
            owner = block.get_submodule(owner_path) if owner_path else block
            saved.append((owner, attr, owner._parameters.pop(attr)))  # type: ignore[arg-type]
            setattr(owner, attr, value)
        yield
    finally:
        for owner, attr, parameter in reversed(saved):
            if hasattr(owner, attr):
                delattr(owner, attr)
            owner._parameters[attr] = parameter


def _masked_mse(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    diff = output.to(torch.float32) - target.to(torch.float32)
    if mask is not None:
        diff = diff[mask]
    return (diff * diff).mean()


def _sorted_codebook(codebook: torch.Tensor, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The codebook sorted ascending and the codes renumbered to match; None if two entries coincide."""
    order = torch.argsort(codebook, stable=True)
    ordered = codebook[order].contiguous()
    if ordered.numel() > 1 and not bool(torch.all(ordered[1:] > ordered[:-1])):
        return None
    return ordered, torch.argsort(order)[codes.long()].to(codes.dtype)


def tune_block(
    block: nn.Module,
    maps: Sequence[CodedMap],
    run: Callable[[int], torch.Tensor],
    target: Callable[[int], torch.Tensor],
    batches: int,
    epochs: int,
    mask: Callable[[int], torch.Tensor | None] = lambda _i: None,
    seed: int = 0,
) -> TuneResult:
    """Tune the maps' codebooks, block scales and biases so that ``run(i)`` approaches ``target(i)``.

    ``run(i)`` runs the block on tuning batch ``i`` as it stands (the caller's
    forward, with its masks and position embeddings); ``target(i)`` is the
    full-precision output for that batch and ``mask(i)`` selects the tokens
    that count (None: all). The block's own parameters are left as they were;
    the caller installs the returned state.
    """
    params = {m.weight_path: m.encoded.params for m in maps}
    device = block.get_parameter(maps[0].weight_path).device if maps else torch.device("cpu")
    block_dtype = {m.weight_path: block.get_parameter(m.weight_path).dtype for m in maps}
    run_dtype = {m.bias_path: block.get_parameter(m.bias_path).dtype for m in maps if m.bias_path}
    stored_dtype = {m.bias_path: m.bias_dtype or run_dtype[m.bias_path] for m in maps if m.bias_path}
    bias_start = {m.bias_path: block.get_parameter(m.bias_path).detach().to(torch.float32) for m in maps if m.bias_path}
    codes = {m.weight_path: m.codes.long() for m in maps}  # CPU: the canonical codec's input
    device_codes = {p: c.to(device) for p, c in codes.items()}

    def canonical_values(encoded: dict[str, EncodedTensor], biases: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The canonical reconstruction (CPU, bit-exact), copied to the block's device."""
        values = {p: reconstruct_from_codes(codes[p], e.codebook, e.scales, params[p]).to(device=device, dtype=block_dtype[p])
                  for p, e in encoded.items()}  # fmt: skip
        return values | {p: b.to(device=device, dtype=run_dtype[p]) for p, b in biases.items()}

    def error(values: dict[str, torch.Tensor]) -> float:
        total = 0.0
        with torch.no_grad(), _overridden(block, values):
            for i in range(batches):
                total += float(_masked_mse(run(i), target(i), mask(i)))
        return total / max(1, batches)

    start = {m.weight_path: m.encoded for m in maps}
    start_biases = {p: block.get_parameter(p).detach().to(stored_dtype[p]).cpu() for p in bias_start}
    before = error(canonical_values(start, start_biases))
    if epochs <= 0 or batches <= 0 or not maps:
        return TuneResult(start, start_biases, before, before, False)

    codebook_delta = {m.weight_path: torch.zeros(m.encoded.codebook.shape, dtype=m.encoded.codebook.dtype, device=device, requires_grad=True)
                      for m in maps}  # fmt: skip
    scale_change = {m.weight_path: torch.zeros(m.encoded.scales.shape, dtype=torch.float32, device=device, requires_grad=True) for m in maps}
    bias_delta = {p: torch.zeros_like(b, requires_grad=True) for p, b in bias_start.items()}
    optimiser = torch.optim.Adam([
        {"params": list(codebook_delta.values()), "lr": CODEBOOK_LR},
        {"params": list(scale_change.values()), "lr": SCALE_LR},
        {"params": list(bias_delta.values()), "lr": BIAS_LR},
    ])  # fmt: skip

    def current() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        codebooks = {m.weight_path: m.encoded.codebook.to(device) + codebook_delta[m.weight_path] for m in maps}
        scales = {m.weight_path: m.encoded.scales.to(device=device, dtype=torch.float32) * (1.0 + scale_change[m.weight_path]) for m in maps}
        return codebooks, scales

    generator = torch.Generator().manual_seed(seed)
    with torch.enable_grad():
        for _ in range(epochs):
            for i in torch.randperm(batches, generator=generator).tolist():
                codebooks, scales = current()
                values = {p: _differentiable_weight(device_codes[p], codebooks[p], scales[p], start[p]).to(block_dtype[p]) for p in start}
                values |= {p: (bias_start[p] + bias_delta[p]).to(run_dtype[p]) for p in bias_start}
                optimiser.zero_grad(set_to_none=True)
                with _overridden(block, values):
                    loss = _masked_mse(run(i), target(i), mask(i))
                loss.backward()
                optimiser.step()

    with torch.no_grad():
        codebooks, scales = current()
        tuned: dict[str, EncodedTensor] = {}
        for m in maps:
            p = m.weight_path
            resorted = _sorted_codebook(codebooks[p].detach().cpu(), codes[p])
            if resorted is None:  # two entries met: keep the untuned state rather than a degenerate codebook
                return TuneResult(start, start_biases, before, before, False)
            codebook, renumbered = resorted
            scales16 = scales[p].detach().cpu().clamp(-65504.0, 65504.0).to(torch.float16)
            codes[p] = renumbered.long()
            tuned[p] = EncodedTensor.from_codes(renumbered.to(torch.uint8), codebook, scales16, params[p])
        tuned_biases = {p: (bias_start[p] + bias_delta[p].detach()).to(stored_dtype[p]).cpu() for p in bias_start}
        after = error(canonical_values(tuned, tuned_biases))
    if after < before:
        return TuneResult(tuned, tuned_biases, before, after, True)
    return TuneResult(start, start_biases, before, after, False)


def unpacked_codes(enc: EncodedTensor) -> torch.Tensor:
    """The integer codes of an encoded tensor, in its shape."""
    from ..codec.bitpack import unpack_codes

    count = math.prod(enc.shape)
    return torch.from_numpy(unpack_codes(enc.packed_codes, enc.params.bits, count).reshape(enc.shape).astype("int64"))

