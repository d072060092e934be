"""Calibrated coding of the all-MiniLM-L6-v2 encoder, with per-tensor widths and block sizes chosen by measured sensitivity.

`uc compress` calibrates causal LMs block by block. For the encoder in the
quality benchmark the bench takes input statistics once from the unquantized
model over the calibration sentences (never the evaluation sentences) and runs
the same coder (`gptq_quantize`, with the grid refit) on each block linear
map. On top of one uniform width per row it can choose a coding per tensor,
an option being a (width, block size) pair (a larger block spends fewer bits on
scales, which a tensor with an even spread of weights may put to better use in
its codes):

1. for every tensor and every option, code that tensor alone and measure the
   damage 1 - mean cosine of the mean-pooled embeddings against the original
   model, on a held-out slice of the *calibration* sentences;
2. pick one option per tensor minimising the summed damage under a budget of
   effective bits per weight (a multiple-choice knapsack, solved exactly by
   dynamic programming over the budget in small steps);
3. install the already coded tensors of the chosen options.

Summing single-tensor damages assumes they add; the evaluation sentences then
measure what the mix really does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

Option = TypeVar("Option")  # what a tensor may be coded as: (bits, block size) in the bench

@dataclass(frozen=True)
class CodedTensor:
    """One tensor coded in one option (width, block size): its canonical reconstruction and what it costs on disk."""

    weight: torch.Tensor
    bits_on_disk: int


def encoder_hessians(model: torch.nn.Module, names: Sequence[str], batches: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Mean input second moment X^T X / n of each named linear map over real (unpadded) tokens, batch by batch."""
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    keep: list[torch.Tensor] = []
    last: list[Any] = [None, None, 0]  # (input tensor, its gram, tokens): query, key and value read one tensor

    def hook_for(name: str) -> Callable[..., None]:
        def hook(_m: torch.nn.Module, inputs: tuple[Any, ...]) -> None:
            if inputs[0] is not last[0]:
                x = inputs[0].reshape(-1, inputs[0].shape[-1])[keep[0]].to(torch.float32)
                last[:] = [inputs[0], x.t() @ x, x.shape[0]]
            sums[name] = sums.get(name, 0) + last[1]  # type: ignore[assignment]
            counts[name] = counts.get(name, 0) + last[2]

        return hook

    handles = [model.get_submodule(n).register_forward_pre_hook(hook_for(n)) for n in names]
    try:
        with torch.no_grad():
            for batch in batches:
                keep[:] = [batch["attention_mask"].reshape(-1).bool()]
                model(**batch)
                last[:] = [None, None, 0]
    finally:
        for h in handles:
            h.remove()
    return {n: sums[n] / counts[n] for n in names}


def code_tensor(weight: torch.Tensor, hessian: torch.Tensor, tokens: int, bits: int, block: int = 64) -> CodedTensor:
    """uc_attest's calibrated coder on one map (blocks along the input axis, grid refit on)."""
    from uc_attest._internal.codec.encoded import reconstruct_encoded
    from uc_attest._internal.codec.params import CodecParams
    from uc_attest._internal.compress.gptq import gptq_quantize
    from uc_attest._internal.compress.hessian import shrink

    params = CodecParams(bits=bits, block_size=block, block_axis=1, dtype="float32")
    enc, codes = gptq_quantize(weight, params, shrink(hessian, tokens), refit=True)
    size = 8 * (enc.packed_codes.nbytes + enc.scales.numel() * 2 + enc.codebook.numel() * 4)
    return CodedTensor(reconstruct_encoded(enc, codes).to(weight.dtype), size)


def _hidden_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    """The hidden states a layer was called with, positionally or by keyword."""
    return args[0] if args else kwargs["hidden_states"]  # type: ignore[no-any-return]


def run_layer(layer: torch.nn.Module, hidden: torch.Tensor, args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    """One layer on ``hidden`` with the other arguments (masks) it was recorded with."""
    from uc_attest._internal.evaluate.blocks import first_output

    if args:
        return first_output(layer(hidden, *args[1:], **kwargs))
    return first_output(layer(**(kwargs | {"hidden_states": hidden})))


class SuffixEmbedder:
    """Mean-pooled embeddings of one tokenised batch, recomputed only from the first layer a change can reach.

    Measuring the sensitivity runs the model once per tensor and width; a tensor
    of layer L cannot change what enters layers 0..L, so those inputs are kept
    from one reference run and only layers L.. are run again (about 40 % fewer
    layer runs over six layers). The kept inputs are checked once: replaying from
    layer 0 must give the full model's embeddings bit for bit.
    """

    def __init__(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> None:
        from uc_attest._internal.evaluate.blocks import find_blocks

        self.prefix, self.layers = find_blocks(model)
        self.mask = batch["attention_mask"].unsqueeze(-1).float()
        self.inputs: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

        def keep(_m: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            self.inputs.append((args, dict(kwargs)))

        handles = [layer.register_forward_pre_hook(keep, with_kwargs=True) for layer in self.layers]
        try:
            with torch.no_grad():
                full = model(**batch).last_hidden_state.float()
        finally:
            for h in handles:
                h.remove()
        if len(self.inputs) != len(self.layers) or not torch.equal(self._pool(full), self.embed_from(0)):
            raise ValueError("the encoder's layers do not replay to its output: measure with full forwards")

    def _pool(self, out: torch.Tensor) -> torch.Tensor:
        return (out.float() * self.mask).sum(1) / self.mask.sum(1)

    def layer_of(self, name: str) -> int:
        from uc_attest._internal.evaluate.blocks import block_of

        index = block_of(name, self.prefix)
        return 0 if index is None else index

    def embed_from(self, first: int) -> torch.Tensor:
        hidden = _hidden_of(*self.inputs[first])
        with torch.no_grad():
            for layer, (args, kwargs) in zip(self.layers[first:], self.inputs[first:]):
                hidden = run_layer(layer, hidden, args, kwargs)
        return self._pool(hidden)


def measure_sensitivity(
    model: torch.nn.Module, weights: dict[str, torch.nn.Parameter], coded: dict[str, dict[Option, CodedTensor]],
    batches: Sequence[dict[str, torch.Tensor]],
) -> dict[str, dict[Option, float]]:
    """Damage of coding each tensor alone in each option over ``batches`` (held-out calibration sentences)."""
    suffixes = [SuffixEmbedder(model, batch) for batch in batches]
    reference = torch.cat([s.embed_from(0) for s in suffixes])
    out: dict[str, dict[Option, float]] = {}
    with torch.no_grad():
        for name, param in weights.items():
            original = param.detach().clone()
            first = suffixes[0].layer_of(name)
            out[name] = {}
            for option, ct in coded[name].items():
                param.copy_(ct.weight)
                embedded = torch.cat([s.embed_from(first) for s in suffixes])
                out[name][option] = float(1.0 - torch.nn.functional.cosine_similarity(reference, embedded, dim=-1).mean())
            param.copy_(original)
    return out


def allocate(
    sensitivity: dict[str, dict[Option, float]], cost: dict[str, dict[Option, int]], weights: int, budget_bpw: float, steps: int = 4000,
) -> dict[str, Option]:
    """Options minimising the summed damage with total bits <= budget_bpw * weights (multiple-choice knapsack).

    The budget is cut into ``steps`` equal units and each option's cost rounded
    up to whole units, so the chosen mix never exceeds the budget.
    """
    budget = budget_bpw * weights
    unit = budget / steps
    names = sorted(sensitivity)
    inf = float("inf")
    best = [0.0] + [inf] * steps  # best[u]: least damage using exactly <= u units so far
    choice: list[list[tuple[Option, int] | None]] = []
    for name in names:
        nxt = [inf] * (steps + 1)
        pick: list[tuple[Option, int] | None] = [None] * (steps + 1)
        for option, d in sensitivity[name].items():
            units = int(-(-cost[name][option] // unit))
            for u in range(units, steps + 1):
                if best[u - units] + d < nxt[u]:
                    nxt[u] = best[u - units] + d
                    pick[u] = (option, u - units)
        best = nxt
        choice.append(pick)
    u = min(range(steps + 1), key=lambda k: best[k])
    if best[u] == inf:
        raise ValueError(f"no width mix fits {budget_bpw} bits per weight")
    chosen: dict[str, Option] = {}
    for name, pick in zip(reversed(names), reversed(choice)):
        option, u = pick[u]  # type: ignore[misc]
        chosen[name] = option
    return chosen


def install(weights: dict[str, torch.nn.Parameter], coded: dict[str, dict[Option, CodedTensor]], chosen: dict[str, Option]) -> float:
    """Copy the chosen coded tensors into the model; returns effective bits per weight."""
    total = 0
    with torch.no_grad():
        for name, param in weights.items():
            ct = coded[name][chosen[name]]
            param.copy_(ct.weight)
            total += ct.bits_on_disk
    return total / sum(p.numel() for p in weights.values())


def encode_option(weight: torch.Tensor, hessian: torch.Tensor, tokens: int, bits: int, block: int = 64) -> tuple[Any, torch.Tensor]:
    """The same coding as :func:`code_tensor`, returned as codec state (EncodedTensor, codes) for tuning."""
    from uc_attest._internal.codec.params import CodecParams
    from uc_attest._internal.compress.gptq import gptq_quantize
    from uc_attest._internal.compress.hessian import shrink

    params = CodecParams(bits=bits, block_size=block, block_axis=1, dtype="float32")
    return gptq_quantize(weight, params, shrink(hessian, tokens), refit=True)


def tune_encoder(
    original: torch.nn.Module, model: torch.nn.Module, encoded: dict[str, tuple[Any, torch.Tensor]],
    batches: Sequence[dict[str, torch.Tensor]], epochs: int,
) -> list[tuple[float, float, bool]]:
    """``uc compress --tune-epochs`` on the encoder: layer by layer, tune the coded maps against the original's outputs.

    ``model`` holds the canonical reconstruction of ``encoded`` (map name ->
    (EncodedTensor, codes)); each layer is fed the inputs the tuned layers
    before it produce, and its target is the original layer's output on the
    original model's own inputs for the same sentences, as in
    ``compress/calibrated.py``. The tuned canonical weights and biases are
    installed in ``model``. Returns each layer's (error before, error after,
    kept).
    """
    from uc_attest._internal.codec.encoded import reconstruct_encoded
    from uc_attest._internal.evaluate.blocks import find_blocks
    from uc_attest._internal.compress.tune import CodedMap, tune_block, unpacked_codes

    prefix, originals = find_blocks(original)
    _, layers = find_blocks(model)
    recorded = [SuffixEmbedder(original, batch) for batch in batches]
    masks = [batch["attention_mask"].bool() for batch in batches]
    reference = [_hidden_of(*r.inputs[0]) for r in recorded]
    coded_stream = [h.clone() for h in reference]
    report = []
    for index, (source_layer, layer) in enumerate(zip(originals, layers)):
        calls = [r.inputs[index] for r in recorded]
        with torch.no_grad():
            targets = [run_layer(source_layer, h, *call) for h, call in zip(reference, calls)]
        start = f"{prefix}.{index}."
        maps = [CodedMap(f"{n[len(start):]}.weight", enc, codes.to(torch.int64), f"{n[len(start):]}.bias")
                for n, (enc, codes) in encoded.items() if n.startswith(start)]  # fmt: skip
        # the lambdas are called within this iteration, while layer, calls and targets are this block's
        result = tune_block(layer, maps, lambda i: run_layer(layer, coded_stream[i], *calls[i]), lambda i: targets[i],  # noqa: B023
                            len(batches), epochs, mask=lambda i: masks[i])  # fmt: skip
        with torch.no_grad():
            for m in maps:
                enc = result.encoded[m.weight_path]
                layer.get_parameter(m.weight_path).copy_(reconstruct_encoded(enc, unpacked_codes(enc)))
                layer.get_parameter(str(m.bias_path)).copy_(result.biases[str(m.bias_path)])
            coded_stream = [run_layer(layer, h, *call) for h, call in zip(coded_stream, calls)]
        reference = targets
        report.append((result.error_before, result.error_after, result.accepted))
    return report
