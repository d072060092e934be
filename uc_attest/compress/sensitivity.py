"""How much each quantized tensor's coding error costs, per coding option, for ``uc compress --target-bpw``.

Why this proxy: the allocation needs, for every tensor and every option (code
width, block size), a number that is comparable across tensors of different
blocks and kinds (dense maps, fused experts, Mamba projections). The
diagonal empirical Fisher of the language-modelling loss gives one: a weight
change D costs about 1/2 sum F * D^2, with F the mean squared gradient of the
loss per window of calibration text. The gradients are taken with the
original weights, *one decoder block resident at a time*: a forward pass
stores each block's inputs (in a temporary directory beside the output, not in
memory), the loss and its gradient are taken at the last block's output, and
a backward pass, block by block in reverse, recomputes each block from its
stored inputs and hands the input gradient to the block before it. Each
block's Fisher lives only while that block is resident; what remains are a few
numbers per tensor.

The coding error D of each option is estimated cheaply (absmax block scales and
a small k-means codebook, no Hessian sweep): the ranking of options, not the
coder's final error, is what the allocation needs, and the real coder then runs
once per tensor in the chosen option. The windows are held out from the ones
the coder calibrates on where the calibration text is long enough, and never
come from the evaluation text.
"""

from __future__ import annotations

import math
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..architecture import ROLE_HEAD, CheckpointKeyMapper, TensorRole
from ..codec.bitpack import packed_nbytes
from ..codec.codebook import nearest_codes
from ..codec.params import CodecParams
from ..codec.reconstruct import TORCH_DTYPES, expand_scales
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
from .blockscale import absmax_scales, normalise
from .gptq import single_threaded
from .options import CompressOptions
from ..source_model import SafetensorsSource
from ..progress import bar_disabled

OPTION_BITS = (3, 4, 5, 6, 7, 8)
OPTION_BLOCKS = (32, 64, 128)
SENSITIVITY_WINDOWS = 4  # windows of --seq-len tokens whose loss gradients give the Fisher
ESTIMATE_ELEMENTS = 1 << 15  # weights per tensor on which each option's coding error is estimated (a row sample)
Option = tuple[int, int]  # (bits, block size)


@dataclass
class Sensitivity:
    """Damage and on-disk bits of every block tensor in every option, and how they were measured."""

    damage: dict[str, dict[Option, float]] = field(default_factory=dict)
    cost_bits: dict[str, dict[Option, int]] = field(default_factory=dict)
    info: dict[str, str | int | float | bool] = field(default_factory=dict)


def option_cost_bits(shape: tuple[int, ...], params: CodecParams) -> int:
    """Bits the pack stores for a tensor of ``shape`` coded with ``params``: codes, float16 scales, float32 codebook."""
    numel = math.prod(shape)
    axis = shape[params.block_axis]
    scales = numel // axis * -(-axis // params.block_size)
    return 8 * (packed_nbytes(numel, params.bits) + 2 * scales + 4 * (1 << params.bits))


def quick_codebook(normed: torch.Tensor, bits: int, samples: int = 1 << 13, iterations: int = 6) -> torch.Tensor:
    """A sorted 2**bits-entry codebook by a few Lloyd rounds from quantiles, on an evenly strided subsample.

    The coder's own k-means (codec.codebook.learn_codebook) is several times
    slower; for ranking options a close estimate of its error is enough.
    """
    x = normed.reshape(-1)
    x = torch.sort(x[:: max(1, x.numel() // samples)].to(torch.float64)).values
    w = x.abs() + 0.05
    k = 1 << bits
    cdf = torch.cumsum(w, 0)
    cb = x[torch.searchsorted(cdf / cdf[-1], (torch.arange(k, dtype=torch.float64) + 0.5) / k).clamp_max(x.numel() - 1)]
    for _ in range(iterations):
        assign = nearest_codes(x, cb)
        num = torch.zeros(k, dtype=torch.float64).index_add_(0, assign, x * w)
        den = torch.zeros(k, dtype=torch.float64).index_add_(0, assign, w)
        cb = torch.sort(torch.where(den > 0, num / den.clamp_min(1e-30), cb)).values
    return cb.to(torch.float32)


def estimated_error(weight: torch.Tensor, params: CodecParams) -> torch.Tensor:
    """W minus a cheap coding of W in ``params`` (absmax scales, quick codebook, nearest entries)."""
    w = weight.detach().to(torch.float32)
    scales = absmax_scales(w, params)
    normed = normalise(w, scales, params)
    codebook = quick_codebook(normed, params.bits)
    values = codebook[nearest_codes(normed, codebook)] * expand_scales(scales, tuple(w.shape), params)
    return w - values.to(TORCH_DTYPES[params.dtype]).to(torch.float32)


def sampled_rows(tensor: torch.Tensor, block_axis: int, max_elements: int = ESTIMATE_ELEMENTS) -> tuple[torch.Tensor, float]:
    """An evenly strided subset of the tensor's rows (blocks run along the last axis), and the factor back to all rows.

    Damage is a sum over weights, so summing over a row sample and scaling by
    rows / sampled rows estimates it without bias at a fraction of the cost.
    """
    rows = tensor.movedim(block_axis, -1).reshape(-1, tensor.shape[block_axis])
    step = max(1, rows.numel() // max_elements)
    sample = rows[::step]
    return sample, rows.shape[0] / sample.shape[0]


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


def _head_gradient(model: nn.Module, blocks: nn.ModuleList, ids: torch.Tensor, last: torch.Tensor,
                   head_weight: torch.Tensor | None) -> tuple[torch.Tensor, float]:  # fmt: skip
    """d(loss)/d(last block's output), one window at a time, through the model's own final norm and head.

    The blocks are bypassed (each hands its input on, the last one returns the
    stored output), so the model's forward computes exactly norm, head and the
    shifted cross-entropy. Returns the gradients and the mean loss.
    """
    head: Any = model.get_output_embeddings()
    saved = head._parameters["weight"] if head is not None else None
    if head is not None and head_weight is not None:
        head._parameters["weight"] = nn.Parameter(head_weight, requires_grad=False)
    grads, losses = [], []
    leaf: list[torch.Tensor] = []

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
                loss = model(input_ids=ids[w : w + 1], labels=ids[w : w + 1], use_cache=False).loss
                loss.backward()
            grads.append(leaf[0].grad.detach().clone())  # type: ignore[union-attr]
            losses.append(float(loss.detach()))
    finally:
        for block in blocks:
            del block.forward
        if head is not None and saved is not None:
            head._parameters["weight"] = saved
    return torch.cat(grads), sum(losses) / max(1, len(losses))


def measure_sensitivity(
    model_dir: Path, source: SafetensorsSource, config: Any, roles: dict[str, TensorRole], options: CompressOptions,
    work_parent: Path, progress: bool = True, stream: tuple[torch.Tensor, dict[str, Any]] | None = None,
) -> Sensitivity:  # fmt: skip
    """Fisher-weighted coding damage of every quantized tensor inside the decoder blocks, in every option."""
    from tqdm import tqdm

    from .calibrated import (
        calibration_stream,
        materialise_outside,
        release_outside,
        resolve_calibration_dtype,
        split_block_keys,
    )

    start = time.perf_counter()
    # the replays' dtype (bf16 where the CPU multiplies it natively): the Fisher needs magnitudes, not many digits
    dtype = torch.bfloat16 if resolve_calibration_dtype(options.calibration_dtype) == "bfloat16" else torch.float32
    model = build_calibration_skeleton(config)
    mapper = CheckpointKeyMapper(model)
    prefix, blocks = find_blocks(model)
    block_keys, outside = split_block_keys(source, mapper, prefix, len(blocks))
    if stream is None:  # the compression's own tokenised calibration text, when given (tokenised once per run)
        stream = calibration_stream(model_dir, options, int(getattr(config, "vocab_size", 0) or 1 << 16))
    ids = stream[0]
    coded = min(options.samples, ids.numel() // options.seq_len)  # the coder's windows (calibration_ids)
    windows, held_out = held_out_windows(ids, options.seq_len, coded, SENSITIVITY_WINDOWS)
    del ids

    outside_modules = materialise_outside(model, blocks, source, outside, roles, dtype)
    chunks = list(windows.split(1))
    captured = capture_inputs(model, blocks, chunks)
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
                    args_kw = captured.kwargs[i][1]
                    hidden = torch.cat([first_output(block(h.unsqueeze(0), *args_kw[0], **args_kw[1])) for h in hidden])
                    release(block)
                    bar.update(1)
            head_keys = [k for k in outside if roles[k].role == ROLE_HEAD]
            head_weight = source.load(head_keys[0]).to(dtype) if head_keys else None
            if head_weight is None and model.get_output_embeddings() is not None and model.get_input_embeddings() is not None:
                head_weight = model.get_input_embeddings().weight.detach()  # tied head
            grad, loss = _head_gradient(model, blocks, windows, hidden, head_weight)
            release_outside(outside_modules)
            del hidden, head_weight
            for i in reversed(range(len(blocks))):
                block = blocks[i]
                _load_block(model, block, source, block_keys[i], dtype)
                inputs = load_file(str(stored / f"in-{i:05d}.safetensors"))["hidden"]
                grad = _block_backward(block, prefix, mapper, block_keys[i], roles, source, inputs, grad,
                                       captured.kwargs[i][1], options, result)  # fmt: skip
                release(block)
                return_freed_memory()
                bar.update(1)
    finally:
        bar.close()
    result.info = {
        "sensitivity": "diagonal empirical Fisher of the LM loss x estimated coding error",
        "sensitivity_windows": int(windows.shape[0]),
        "sensitivity_windows_held_out": held_out,
        "sensitivity_loss": round(loss, 6),
        "sensitivity_seconds": round(time.perf_counter() - start, 1),
    }
    return result


def _load_block(model: nn.Module, block: nn.Module, source: SafetensorsSource, keys: list[str], dtype: torch.dtype) -> None:
    materialise(block, dtype)
    load_checkpoint_tensors(model, {k: source.load(k) for k in keys}, dtype)


def _block_backward(
    block: nn.Module, prefix: str, mapper: CheckpointKeyMapper, keys: list[str], roles: dict[str, TensorRole],
    source: SafetensorsSource, inputs: torch.Tensor, grad_out: torch.Tensor, call: tuple[tuple[Any, ...], dict[str, Any]],
    options: CompressOptions, result: Sensitivity,
) -> torch.Tensor:  # fmt: skip
    """Recompute the block per window, backpropagate ``grad_out``, score its tensors; returns the input gradients."""
    quantized = [k for k in keys if roles[k].quantize]
    paths = {k: mapper.target(k)[len(prefix) + 1 :].split(".", 1)[1] for k in quantized}
    params = {p: block.get_parameter(p) for p in set(paths.values())}
    for p in params.values():
        p.requires_grad_(True)
    fisher = {p: torch.zeros(v.shape, dtype=torch.float32) for p, v in params.items()}
    grads_in = []
    args, kw = call
    for w in range(inputs.shape[0]):
        x = inputs[w : w + 1].clone().requires_grad_(True)
        with torch.enable_grad():
            out = first_output(block(x, *args, **kw))
            (out * grad_out[w : w + 1]).sum().backward()
        grads_in.append(x.grad.detach().clone())  # type: ignore[union-attr]
        for pname, v in params.items():
            if v.grad is not None:
                fisher[pname] += v.grad.detach().to(torch.float32) ** 2
                v.grad = None
    for p in params.values():
        p.requires_grad_(False)
    for key in quantized:
        weight = source.load(key)
        shape = tuple(weight.shape)
        block_axis = roles[key].block_axis
        assert block_axis is not None
        w_rows, factor = sampled_rows(weight, block_axis)
        f_rows, _ = sampled_rows(_fisher_for_key(key, shape, fisher[paths[key]]), block_axis)
        result.damage[key], result.cost_bits[key] = {}, {}
        with single_threaded():  # many small tensor operations: a thread pool only adds barrier waits (see gptq.py)
            for bits in OPTION_BITS:
                for size in OPTION_BLOCKS:
                    cp = CodecParams(bits=bits, block_size=size, block_axis=block_axis, dtype=options.dtype)
                    err = estimated_error(w_rows, cp.model_copy(update={"block_axis": 1}))
                    result.damage[key][(bits, size)] = factor * float((f_rows * err * err).sum())
                    result.cost_bits[key][(bits, size)] = option_cost_bits(shape, cp)
    return torch.cat(grads_in)
