"""How much each quantized tensor's coding error costs, per coding option, for ``uc compress --target-bpw``.

Damage is the rise of the KL divergence from the original model's output
distribution, to second order: a weight change D costs 1/2 vec(D)^T F vec(D),
with F the Fisher information of the model's own output distribution (the
KL's Hessian at the original weights). Two pieces:

* **F, per tensor**, from the *true* Fisher: on SENSITIVITY_WINDOWS windows of
  the calibration mix (held out from the coder's windows where the text is
  long enough), labels are sampled from the model's own softmax (seeded), and
  the gradient of each window's summed sampled log-likelihood is taken in
  float32. Its square is an unbiased estimate of the summed per-token Fisher.
  For a linear map y = W x, F is factored as (sum over tokens of g g^T)
  Kronecker E[x x^T] (K-FAC, g the gradient at the map's output), and only
  the output side's diagonal G_i is kept: the damage of an option is then
  1/2 sum_i G_i D_i H D_i^T with H = E[x x^T] the map's input second moment.
  That keeps the cross terms of H, so the error feedback of the GPTQ sweep,
  which puts the error where H is small, is credited. Tensors not read through
  such a map (fused experts, converted layouts) use F's diagonal instead:
  1/2 sum F_ij D_ij^2.
* **D, per option**, from the real coder (option_error.py): the GPTQ sweep,
  as ``uc compress`` runs it, on a row sample of the tensor, under the H
  measured here.

Why not the old estimate (diagonal empirical Fisher of the loss x an absmax,
nearest-rounding coder): its error model was off by 0.7x-4x per tensor family
and its squared loss gradients, from 4 windows, ranked single-tensor damage at
0.26-0.39 against measurement (issue 28). bench/sensitivity_validation.py
measures this estimate against single-tensor KL increases.

Memory: one decoder block resident at a time. A forward pass stores each
block's inputs in a temporary directory beside the output, the head turns the
last block's output into the gradients, and a backward pass, block by block in
reverse, recomputes each block from its stored inputs, collects G and H with
module hooks and hands the input gradient to the block before it; the block's
tensors are priced from those statistics (on a second thread while the block
before it is backpropagated, see _PricingQueue), not from the block itself.
"""

from __future__ import annotations

import math
import re
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..architecture import ROLE_HEAD, CheckpointKeyMapper, TensorRole
from ..codec.bitpack import packed_nbytes
from ..codec.params import CodecParams
from ..evaluate.blocks import (
    build_calibration_skeleton,
    capture_inputs,
    find_blocks,
    first_output,
    load_checkpoint_tensors,
    materialise,
    release,
    return_freed_memory,
)
from ..source_model import SafetensorsSource
from ..progress import bar_disabled
from .hessian import gram, is_dense_unit
from .option_error import (
    OPTION_BITS,
    OPTION_BLOCKS,
    Option,
    as_rows,
    complete_grid,
    group_differences,
    measured_options,
    reference_option,
    row_errors,
    sampled_rows,
)
from .options import CompressOptions

SENSITIVITY_WINDOWS = 16  # windows of the calibration mix on which the Fisher is sampled
# tokens per window (at most --seq-len): 16 short windows cost what the loss Fisher's 4 x 512 cost, and span 4x
# more of the mix; per-window labels are sampled anew, so what the estimate needs is many tokens from many places
SENSITIVITY_TOKENS = 128
__all__ = ["OPTION_BITS", "OPTION_BLOCKS", "Option", "Sensitivity", "measure_sensitivity", "option_cost_bits"]


@dataclass
class Sensitivity:
    """Damage and on-disk bits of every block tensor in every option, and how they were measured."""

    damage: dict[str, dict[Option, float]] = field(default_factory=dict)
    cost_bits: dict[str, dict[Option, int]] = field(default_factory=dict)
    # per map where the coder has a choice of domain: True to code it in the incoherence domain (chosen here on the
    # row sample at the reference option, as the coder's "auto" would choose; the coder then sweeps it once)
    rotated: dict[str, bool] = field(default_factory=dict)
    info: dict[str, str | int | float | bool] = field(default_factory=dict)


def option_cost_bits(shape: tuple[int, ...], params: CodecParams) -> int:
    """Bits the pack stores for a tensor of ``shape`` coded with ``params``: codes, float16 scales, float32 codebook."""
    numel = math.prod(shape)
    axis = shape[params.block_axis]
    scales = numel // axis * -(-axis // params.block_size)
    return 8 * (packed_nbytes(numel, params.bits) + 2 * scales + 4 * (1 << params.bits))


def held_out_windows(ids: torch.Tensor, seq_len: int, coded: int, count: int) -> tuple[torch.Tensor, bool]:
    """``count`` windows of the token stream not among the ``coded`` evenly spaced calibration windows.

    Returns the windows and whether they are disjoint from the coder's (False
    only when the text is too short for both: then the coder's own windows).
    """
    available = ids.numel() // seq_len
    used = {j * available // coded for j in range(coded)} if coded else set()
    free = [w for w in range(available) if w not in used]
    held_out = bool(free)
    pool = free if free else sorted(used)
    n = min(count, len(pool))
    picks = [pool[j * len(pool) // n] for j in range(n)]
    return torch.stack([ids[w * seq_len : (w + 1) * seq_len] for w in picks]), held_out


def _expert_index(key: str) -> int | None:
    found = re.findall(r"experts\.(\d+)\.", key)
    return int(found[-1]) if found else None


def _fisher_for_key(key: str, shape: tuple[int, ...], fisher: torch.Tensor) -> torch.Tensor:
    """The Fisher of a checkpoint tensor from that of the block parameter it loads into.

    The same tensor, or its transpose, element by element; a fused parameter
    (experts stacked into one tensor by transformers' loader) gives each
    expert's tensor the mean Fisher of that expert's slice.
    """
    if tuple(fisher.shape) == shape:
        return fisher
    if fisher.ndim == 2 and tuple(fisher.t().shape) == shape:
        return fisher.t()
    e = _expert_index(key)
    if e is not None and fisher.ndim >= 1 and fisher.shape[0] > e:
        return fisher[e].mean().expand(shape)
    return fisher.mean().expand(shape)


def _sample_labels(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One label per row of ``probs`` ([tokens, vocab]) drawn from that row by inverting its cumulative sum: [tokens, 1].

    Why not torch.multinomial: on a 49k-entry vocabulary it took 143 ms for 128
    rows on the 2-core CPU, 2.3 s of every --target-bpw run; a cumulative sum and
    a binary search draw from the same distribution (seeded, so the estimate
    repeats) in 17 ms (float32: its rounding moves an entry's probability by
    about 1e-7, far below what 16 windows of labels can resolve). side="right"
    never returns an entry of probability zero.
    """
    cdf = probs.to(torch.float32).cumsum(-1)
    u = torch.rand(probs.shape[0], 1, generator=generator, dtype=torch.float32) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp_max(probs.shape[-1] - 1)


def _head_gradient(model: nn.Module, blocks: nn.ModuleList, ids: torch.Tensor, last: torch.Tensor,
                   head_weight: torch.Tensor | None, seed: int) -> tuple[torch.Tensor, float]:  # fmt: skip
    """d(sampled log-likelihood)/d(last block's output), one window at a time, through the model's own norm and head.

    The labels are drawn from the model's own output distribution (a seeded
    generator): the squared gradient of their summed log-likelihood estimates
    the true Fisher without bias, where the dataset's next tokens would give
    the empirical Fisher of the loss, which measures how wrong the model is
    rather than how far its distribution moves. The blocks are bypassed (each
    hands its input on, the last one returns the stored output), so the
    model's forward computes exactly norm and head. Returns the gradients and
    the mean per-token entropy of the output (what the windows looked like).
    """
    head: Any = model.get_output_embeddings()
    saved = head._parameters["weight"] if head is not None else None
    if head is not None and head_weight is not None:
        head._parameters["weight"] = nn.Parameter(head_weight, requires_grad=False)
    grads, entropies = [], []
    leaf: list[torch.Tensor] = []
    generator = torch.Generator().manual_seed(seed)

    def bypass(index: int):  # type: ignore[no-untyped-def]
        def forward(hidden_states: torch.Tensor, *args: Any, **kw: Any) -> torch.Tensor:
            return leaf[0] if index == len(blocks) - 1 else hidden_states

        return forward

    for i, block in enumerate(blocks):
        block.forward = bypass(i)  # type: ignore[method-assign]
    try:
        for w in range(ids.shape[0]):
            leaf[:] = [last[w : w + 1].detach().clone().requires_grad_(True)]
            with torch.enable_grad():
                logits = model(input_ids=ids[w : w + 1], use_cache=False).logits[0].to(torch.float32)
                log_p = torch.log_softmax(logits, dim=-1)
                probs = log_p.detach().exp()
                labels = _sample_labels(probs, generator)
                log_p.gather(1, labels).sum().backward()
            grads.append(leaf[0].grad.detach().clone())  # type: ignore[union-attr]
            entropies.append(float(-(probs * log_p.detach()).sum(-1).mean()))
    finally:
        for block in blocks:
            del block.forward
        if head is not None and saved is not None:
            head._parameters["weight"] = saved
    return torch.cat(grads), sum(entropies) / max(1, len(entropies))


def measure_sensitivity(
    model_dir: Path, source: SafetensorsSource, config: Any, roles: dict[str, TensorRole], options: CompressOptions,
    work_parent: Path, progress: bool = True, stream: tuple[torch.Tensor, dict[str, Any]] | None = None,
) -> Sensitivity:  # fmt: skip
    """KL damage (true Fisher x the real coder's error) of every quantized tensor inside the decoder blocks, in every option."""
    from tqdm import tqdm

    from .calibrated import calibration_stream, materialise_outside, release_outside, split_block_keys

    start = time.perf_counter()
    dtype = torch.float32  # gradients squared and summed: bf16's 8 significant bits would be the noise floor
    model = build_calibration_skeleton(config)
    mapper = CheckpointKeyMapper(model)
    prefix, blocks = find_blocks(model)
    block_keys, outside = split_block_keys(source, mapper, prefix, len(blocks))
    if stream is None:  # the compression's own tokenised calibration text, when given (tokenised once per run)
        stream = calibration_stream(model_dir, options, int(getattr(config, "vocab_size", 0) or 1 << 16))
    ids = stream[0]
    coded = min(options.samples, ids.numel() // options.seq_len)  # the coder's windows (calibration_ids)
    windows, held_out = held_out_windows(ids, options.seq_len, coded, SENSITIVITY_WINDOWS)
    windows = windows[:, :SENSITIVITY_TOKENS]
    del ids

    outside_modules = materialise_outside(model, blocks, source, outside, roles, dtype)
    captured = capture_inputs(model, blocks, list(windows.split(1)))
    # the blocks' keyword arguments for all windows at once too: a block whose every tensor is read through a dense
    # map is recomputed and backpropagated for every window in one batch (see _block_backward)
    batched = capture_inputs(model, blocks, [windows], keep_hidden=False)
    calls = [{1: captured.kwargs[i][1], windows.shape[0]: batched.kwargs[i][windows.shape[0]]} for i in range(len(blocks))]
    assert captured.hidden is not None
    hidden = captured.hidden.to(dtype)
    result = Sensitivity()
    bar = tqdm(total=2 * len(blocks), desc="sensitivity", unit="pass", disable=bar_disabled(progress))
    try:
        with tempfile.TemporaryDirectory(prefix=".uc-sensitivity-", dir=work_parent if work_parent.is_dir() else None) as tmp:
            stored = Path(tmp)
            with torch.no_grad():
                for i, block in enumerate(blocks):
                    _load_block(model, block, source, block_keys[i], dtype)
                    save_file({"hidden": hidden.contiguous()}, str(stored / f"in-{i:05d}.safetensors"))
                    args, kw = calls[i][hidden.shape[0]]
                    hidden = first_output(block(hidden, *args, **kw))
                    release(block)
                    bar.update(1)
            head_keys = [k for k in outside if roles[k].role == ROLE_HEAD]
            head_weight = source.load(head_keys[0]).to(dtype) if head_keys else None
            if head_weight is None and model.get_output_embeddings() is not None and model.get_input_embeddings() is not None:
                head_weight = model.get_input_embeddings().weight.detach()  # tied head
            grad, entropy = _head_gradient(model, blocks, windows, hidden, head_weight, options.seed)
            release_outside(outside_modules)
            del hidden, head_weight
            with _PricingQueue(options, result) as pricing:
                for i in reversed(range(len(blocks))):
                    block = blocks[i]
                    _load_block(model, block, source, block_keys[i], dtype)
                    inputs = load_file(str(stored / f"in-{i:05d}.safetensors"))["hidden"]
                    grad, measured = _block_backward(BlockSite(block, prefix, mapper, block_keys[i], roles, source, calls[i]), inputs, grad)
                    release(block)
                    return_freed_memory()
                    pricing.submit(measured)  # priced while the block before it is backpropagated
                    bar.update(1)
    finally:
        bar.close()
    result.info = {
        "sensitivity": "true Fisher of the output distribution (sampled labels, K-FAC output diagonal x input second "
                       "moment) x the real coder's error per option (row sample)",  # fmt: skip
        "sensitivity_windows": int(windows.shape[0]),
        "sensitivity_windows_held_out": held_out,
        "sensitivity_entropy": round(entropy, 6),
        "sensitivity_seconds": round(time.perf_counter() - start, 1),
    }
    return result


def _thread_counts_per_thread() -> bool:
    """True where torch's thread count is a property of the calling thread (the OpenMP backend, as in the x86 wheels).

    There a pricing thread can run the coder on one thread (its
    single_threaded sections) while the caller's backward pass keeps every
    thread. With torch's native pool the count is global: a pricing thread
    would change the caller's count mid-pass, so its float sums, so pricing
    runs in line there.
    """
    return "ATen parallel backend: OpenMP" in torch.__config__.parallel_info()


class _PricingQueue:
    """Prices block i on a second thread while the caller backpropagates block i-1; one block in flight at most.

    Why: pricing runs the coder on row samples, thousands of small
    operations on one core (24 of the 34 s of SmolLM2's sensitivity pass on
    a 2-core CPU), while the backward pass is a few large products; side by
    side they use both cores. The result does not depend on it: each block's
    pricing reads only its own measurement (moments, squared gradients, the
    source's tensors), runs at the caller's thread count, and is merged in
    block order, so the damages are bit-identical to pricing in line
    (test_sensitivity_fisher checks it).

    Memory: one block's measurement beyond the sequential pass, its input
    Gram matrices. A measurement with diagonal Fisher tensors (parameters of
    the block's size: fused experts, converted layouts) is priced in line
    instead, so that no second block-sized tensor is ever held.
    """

    def __init__(self, options: CompressOptions, result: Sensitivity) -> None:
        self._options, self._result = options, result
        self._threads = torch.get_num_threads()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="uc-pricing") if _thread_counts_per_thread() else None
        self._pending: Future[Sensitivity] | None = None

    def __enter__(self) -> _PricingQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self._collect()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, measured: _BlockMeasurement) -> None:
        self._collect()  # the block after it, priced while this one was backpropagated
        if self._pool is None or measured.fisher:
            self._merge(_price_block(measured, self._options, self._threads))
        else:
            self._pending = self._pool.submit(_price_block, measured, self._options, self._threads)

    def _collect(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._merge(pending.result())

    def _merge(self, part: Sensitivity) -> None:
        self._result.damage.update(part.damage)
        self._result.cost_bits.update(part.cost_bits)
        self._result.rotated.update(part.rotated)


def _load_block(model: nn.Module, block: nn.Module, source: SafetensorsSource, keys: list[str], dtype: torch.dtype) -> None:
    materialise(block, dtype)
    load_checkpoint_tensors(model, {k: source.load(k) for k in keys}, dtype)


@dataclass
class BlockSite:
    """One resident decoder block and what is needed to read its checkpoint tensors through its modules."""

    block: nn.Module
    prefix: str
    mapper: CheckpointKeyMapper
    keys: list[str]
    roles: dict[str, TensorRole]
    source: SafetensorsSource
    # the block's positional and keyword arguments by batch size: one window, and all of them
    calls: dict[int, tuple[tuple[Any, ...], dict[str, Any]]]

    def path(self, key: str) -> str:
        """The key's parameter path inside the block."""
        return self.mapper.target(key)[len(self.prefix) + 1 :].split(".", 1)[1]

    def linear_module(self, key: str) -> nn.Module | None:
        """The dense map whose weight is exactly this checkpoint tensor with its block axis as the map's input, else None."""
        owner, _, attr = self.path(key).rpartition(".")
        module = self.block.get_submodule(owner) if owner else self.block
        axis = self.roles[key].block_axis
        shape = tuple(self.source.shape(key))
        if attr != "weight" or not is_dense_unit(module) or axis is None or len(shape) != 2:
            return None
        weight: Any = module.weight
        in_axis = 1 if isinstance(module, nn.Linear) else 0  # transformers' Conv1D stores [in, out]
        if tuple(weight.shape) != shape or axis != in_axis:
            return None
        return module


@dataclass
class _Moments:
    """What the hooks of one dense map collect over the block's recomputation: sum x x^T, tokens, sum g^2 per output."""

    xx: torch.Tensor | None = None
    tokens: int = 0
    gg: torch.Tensor | None = None
    group: int = -1  # maps of one group read the same input (q, k, v; gate, up): one Hessian, swept together


@contextmanager
def _moment_hooks(modules: dict[str, nn.Module], moments: dict[str, _Moments]) -> Iterator[None]:
    """Forward hooks that add each map's input Gram matrix (shared by maps reading the same input) and its output gradient."""
    last: dict[str, Any] = {"x": None, "gram": None, "inputs": 0}

    def hook(key: str):  # type: ignore[no-untyped-def]
        def forward(_m: nn.Module, inputs: tuple[Any, ...], out: torch.Tensor) -> None:
            # q, k, v (or gate, up) read one input: one Gram matrix for all of them. The identity test is on the tensor
            # the block passed, not on a detached view of it (a new object on every call, which once made every map
            # a group of its own: a Gram matrix, a factorisation and a sweep per map instead of per input)
            x = inputs[0]
            if last["x"] is not x:
                last["x"], last["gram"], last["inputs"] = x, gram(x.detach().reshape(-1, x.shape[-1])), last["inputs"] + 1
            m = moments[key]
            if m.group < 0:
                m.group = last["inputs"]
            m.xx = last["gram"] if m.xx is None else m.xx + last["gram"]
            m.tokens += x.numel() // x.shape[-1]

            def backward(g: torch.Tensor) -> None:
                sq = g.detach().reshape(-1, g.shape[-1]).to(torch.float32).square().sum(0)
                m.gg = sq if m.gg is None else m.gg + sq

            out.register_hook(backward)

        return forward

    handles = [module.register_forward_hook(hook(key)) for key, module in modules.items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _sample(site: BlockSite, key: str) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The tensor as [rows, input] (block axis last), the indices of its sampled rows, and the factor back to all rows."""
    axis = site.roles[key].block_axis
    assert axis is not None
    rows = as_rows(site.source.load(key), axis)
    index, factor = sampled_rows(rows)
    return rows, index, factor


@torch.no_grad()
def _called(site: BlockSite, modules: dict[str, nn.Module], x: torch.Tensor) -> dict[str, nn.Module]:
    """Those of ``modules`` that the block really calls on its input (a Mamba mixer, say, reads dt_proj's weight directly)."""
    seen: set[str] = set()

    def hook(key: str):  # type: ignore[no-untyped-def]
        return lambda *_: seen.add(key)

    handles = [module.register_forward_hook(hook(key)) for key, module in modules.items()]
    try:
        site.block(x, *site.calls[x.shape[0]][0], **site.calls[x.shape[0]][1])
    finally:
        for h in handles:
            h.remove()
    return {k: m for k, m in modules.items() if k in seen}


@dataclass
class _BlockMeasurement:
    """What one block's backward pass leaves for pricing: the statistics, and where the tensors are read (the source).

    Not the block's weights: the block is released before its pricing ends.
    """

    site: BlockSite
    quantized: list[str]
    linear: set[str]  # keys read through a dense map, priced by their moments
    moments: dict[str, _Moments]
    fisher: dict[str, torch.Tensor]  # parameter path -> squared gradient, for every other key


def _block_backward(site: BlockSite, inputs: torch.Tensor, grad_out: torch.Tensor) -> tuple[torch.Tensor, _BlockMeasurement]:
    """Recompute the block per window and backpropagate ``grad_out``: the input gradients, and what pricing needs."""
    quantized = [k for k in site.keys if site.roles[k].quantize]
    linear = _called(site, {k: module for k in quantized if (module := site.linear_module(k)) is not None}, inputs[:1])
    # tensors not read through one dense map: the diagonal of the Fisher, from their parameter's squared gradient
    params = {p: site.block.get_parameter(p) for p in {site.path(k) for k in quantized if k not in linear}}
    for p in params.values():
        p.requires_grad_(True)
    fisher = {p: torch.zeros(v.shape, dtype=torch.float32) for p, v in params.items()}
    moments = {k: _Moments() for k in linear}
    grads_in = []
    # windows are independent, so one batched pass gives every window's input gradient and the same per-token
    # moments; only a diagonal Fisher needs each window's own parameter gradient (its square is per window)
    step = 1 if params else inputs.shape[0]
    args, kw = site.calls[step]
    with _moment_hooks(linear, moments):
        for w in range(0, inputs.shape[0], step):
            x = inputs[w : w + step].clone().requires_grad_(True)
            with torch.enable_grad():
                out = first_output(site.block(x, *args, **kw))
                (out * grad_out[w : w + step]).sum().backward()
            grads_in.append(x.grad.detach().clone())  # type: ignore[union-attr]
            for pname, v in params.items():
                if v.grad is not None:
                    fisher[pname] += v.grad.detach().to(torch.float32) ** 2
                    v.grad = None
    for p in params.values():
        p.requires_grad_(False)
    return torch.cat(grads_in), _BlockMeasurement(site, quantized, set(linear), moments, fisher)


def _price_block(measured: _BlockMeasurement, options: CompressOptions, threads: int) -> Sensitivity:
    """The damage and cost of every option of the block's quantized tensors (the real coder on row samples).

    ``threads``: the torch thread count to price with, set here because this
    may run on a pricing thread (see _PricingQueue), where OpenMP starts from
    its own default; the same count gives the same float sums, so the same
    damages, on whichever thread the pricing runs.
    """
    torch.set_num_threads(threads)
    site, moments, result = measured.site, measured.moments, Sensitivity()
    bits, blocks = tuple(OPTION_BITS), tuple(OPTION_BLOCKS)
    reference, options_measured = reference_option(bits, blocks), measured_options(bits, blocks)
    # maps read through a hook, by the input they share; every other tensor alone, priced by its diagonal Fisher
    groups: dict[int, list[str]] = {}
    for key in measured.quantized:
        groups.setdefault(moments[key].group if key in measured.linear else -1 - len(groups), []).append(key)
    for members in groups.values():
        samples = [_sample(site, key) for key in members]
        stats = moments.get(members[0])
        hessian = None if stats is None or stats.xx is None else stats.xx / max(1, stats.tokens)
        coding = group_differences([rows[index] for rows, index, _ in samples], hessian, options, options_measured, reference)
        for key, rotated in zip(members, coding.rotated, strict=True):
            if rotated is not None:
                result.rotated[key] = rotated
        for key, (_, index, factor), coded in zip(members, samples, coding.differences, strict=True):
            if hessian is not None:
                gg = moments[key].gg  # None: the map's output never reached the loss (no gradient, no damage)
                weights = gg[index] if gg is not None else torch.zeros(index.numel())
                damage = {o: 0.5 * factor * float((weights * row_errors(d, hessian)).sum()) for o, d in coded.items()}
            else:  # the diagonal Fisher of the parameter times the squared error of the coder without a Hessian
                block_axis = site.roles[key].block_axis
                assert block_axis is not None
                f_rows = as_rows(_fisher_for_key(key, tuple(site.source.shape(key)), measured.fisher[site.path(key)]), block_axis)[index]
                damage = {o: 0.5 * factor * float((f_rows * d * d).sum()) for o, d in coded.items()}
            result.damage[key] = complete_grid(damage, bits, blocks)
            result.cost_bits[key] = {
                (b, z): option_cost_bits(tuple(site.source.shape(key)), CodecParams(bits=b, block_size=z, block_axis=site.roles[key].block_axis or 0,
                                                                                    dtype=options.dtype))
                for b in bits for z in blocks
            }  # fmt: skip
    return result
