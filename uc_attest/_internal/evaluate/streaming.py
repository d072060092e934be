"""Perplexity computed block by block: at most one decoder block's weights in memory.

Method uc-ppl-v1, the same windows and the same arithmetic as
:func:`~.perplexity.evaluate_tokens`, in another order: the model is a
skeleton (parameters on the meta device, buffers real, see blocks.py); the
embeddings and whatever precedes the first block are loaded and every
window's input to block 0 is recorded; then each decoder block in turn is
rebuilt from its tensors, applied to every window, and freed; last, the final
norm and the head turn each window's output into logits and NLL. Each window
runs with batch size 1 through the very modules and kernels the whole-model
forward uses, on the same device and dtype, so the NLL of every window is the
same bit for bit (tests/evaluate/test_streaming.py holds that for every tiny
architecture: dense, MoE, Mamba, hybrid). A vendor who measured with the whole
model and a customer who measures streaming agree exactly.

What a block receives besides its hidden states (masks, position embeddings)
is recorded once, from the first window: every window has the same length
and no padding, so those depend on the shape only, as in the compressor's
block replay (``capture_inputs``), which this module reuses.

Memory: one block's weights, the parts outside the blocks (embeddings, final
norm, head) and the hidden states of the windows (windows x seq_len x hidden x
4 bytes: 47 MB for SmolLM2's 40 windows of 512, 671 MB at hidden 8192).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ..architecture import CheckpointKeyMapper
from ..codec.reconstruct import TORCH_DTYPES
from ..progress import bar_disabled
from .blocks import (
    block_of,
    build_calibration_skeleton,
    capture_inputs,
    find_blocks,
    first_output,
    load_checkpoint_tensors,
    materialise,
    materialise_modules,
    release,
    return_freed_memory,
)
from .perplexity import EvalResult, check_token_range, eval_result, window_nll, windows_of
from .settings import EvalSettings

TensorSource = Callable[[list[str]], dict[str, torch.Tensor]]
"""Checkpoint tensors by name (a pack's verified reconstruction, or a safetensors model directory)."""


def _outside_modules(model: nn.Module, blocks: nn.ModuleList) -> list[nn.Module]:
    inside = {id(m) for m in blocks.modules()}
    return [m for m in model.modules() if id(m) not in inside]


def _buffers_to(model: nn.Module, dtype: torch.dtype, device: torch.device) -> None:
    """What ``model.to(dtype).to(device)`` does to buffers (floating ones take the dtype), parameters left alone."""
    for module in model.modules():
        for name, buf in list(module._buffers.items()):
            if buf is not None:
                module._buffers[name] = buf.to(device=device, dtype=dtype if buf.is_floating_point() else buf.dtype)


@contextmanager
def _replaying_outputs(blocks: nn.ModuleList, final: dict[str, Any]) -> Iterator[None]:
    """Blocks that pass their input through, and a last block that returns the recorded output of the current window."""
    last = len(blocks) - 1

    def passthrough(hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return hidden_states

    def recorded(hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        out = final["hidden"]
        return (out,) if final["tuple"] else out

    for i, block in enumerate(blocks):
        block.forward = recorded if i == last else passthrough  # type: ignore[method-assign]
    try:
        yield
    finally:
        for block in blocks:
            del block.forward


def _tie_as_loading_does(model: nn.Module, blocks: nn.ModuleList, loaded: list[str]) -> None:
    """Tie the output embeddings to the input ones where the config says so and the checkpoint omits them.

    ``from_pretrained`` does this after loading (a tied head is not stored);
    the same call with the same missing keys keeps the two paths identical.
    """
    mapper = CheckpointKeyMapper(model)
    provided = {mapper.target(k) for k in loaded}
    inside = {id(p) for p in blocks.parameters()}
    missing = {n for n, p in model.named_parameters(remove_duplicate=False) if id(p) not in inside and n not in provided}
    if missing and hasattr(model, "tie_weights"):
        model.tie_weights(missing_keys=missing)


def split_by_block(model: nn.Module, names: list[str]) -> tuple[list[str], dict[int, list[str]]]:
    """Checkpoint tensor names outside the decoder blocks, and those of each block (mapped as transformers loads them)."""
    mapper = CheckpointKeyMapper(model)
    prefix, blocks = find_blocks(model)
    per_block: dict[int, list[str]] = {i: [] for i in range(len(blocks))}
    outside: list[str] = []
    for name in names:
        index = block_of(mapper.target(name), prefix)
        (per_block[index] if index is not None and index in per_block else outside).append(name)
    return outside, per_block


@torch.inference_mode()
def evaluate_streaming(config: Any, names: list[str], load: TensorSource, ids: torch.Tensor, *, weights_dtype: torch.dtype,
                       settings: EvalSettings) -> EvalResult:  # fmt: skip
    """uc-ppl-v1 over ``ids`` with the model of ``config`` whose tensors ``load`` returns, one block resident at a time.

    ``weights_dtype`` is the dtype the whole-model path would load the model in
    (the pack's reconstruction dtype, or the checkpoint's); buffers are built as
    that load builds them, then everything computes in ``settings.compute_dtype``.
    """
    started = time.perf_counter()
    windows = windows_of(ids, settings.seq_len, settings.max_windows)
    logits = streaming_logits(config, names, load, windows, weights_dtype=weights_dtype, settings=settings)
    nlls = [window_nll(out, row.unsqueeze(0).to(out.device)) for row, out in zip(windows, logits, strict=True)]
    return eval_result(nlls, settings.seq_len, settings.compute_dtype, started)


def streaming_logits(config: Any, names: list[str], load: TensorSource, windows: torch.Tensor, *, weights_dtype: torch.dtype,
                     settings: EvalSettings) -> Iterator[torch.Tensor]:  # fmt: skip
    """The logits [1, seq_len, vocab] of each row of ``windows``, in order, one decoder block resident at a time.

    Every block runs over all windows before the first logits are yielded (the
    windows' hidden states are what is kept); then the final norm and head turn
    one window at a time into logits, so the consumer never holds more than the
    logits of one window (``uc eval --reference`` zips two of these).
    """
    with torch.inference_mode():
        dtype = TORCH_DTYPES[settings.compute_dtype]
        target = torch.device(settings.device)
        model = build_calibration_skeleton(config, dtype=weights_dtype)
        _buffers_to(model, dtype, target)
        _, blocks = find_blocks(model)
        outside, per_block = split_by_block(model, names)

        materialise_modules(_outside_modules(model, blocks), dtype, target)  # tied embeddings stay tied
        load_checkpoint_tensors(model, {k: v.to(target) for k, v in load(outside).items()}, dtype)
        _tie_as_loading_does(model, blocks, outside)
        check_token_range(windows, model)  # an id without an embedding row: one clear error, not an IndexError
        rows = [w.unsqueeze(0).to(target) for w in windows]
        captured = capture_inputs(model, blocks, rows[:1], keep_hidden=False)
        block_args = [captured.kwargs[i][1] for i in range(len(blocks))]
        hidden = [_first_block_input(model, blocks, row) for row in rows]

        returns_tuple = False
        bar = tqdm(total=len(blocks), desc="eval (streaming)", unit="block", disable=bar_disabled(settings.progress), leave=False)
        for i, block in enumerate(blocks):
            materialise(block, dtype, target)
            load_checkpoint_tensors(model, {k: v.to(target) for k, v in load(per_block[i]).items()}, dtype)
            args, kwargs = block_args[i]
            for w, x in enumerate(hidden):
                out = block(x, *args, **kwargs)
                returns_tuple = isinstance(out, tuple)
                hidden[w] = first_output(out)
            release(block)
            return_freed_memory()
            bar.update(1)
        bar.close()

    final: dict[str, Any] = {"tuple": returns_tuple}
    try:
        for w, row in enumerate(rows):
            with torch.inference_mode(), _replaying_outputs(blocks, final):
                final["hidden"] = hidden[w]
                logits = model(input_ids=row, use_cache=False).logits
            hidden[w] = torch.empty(0)  # this window's states are no longer needed
            yield logits
    finally:
        del model, hidden
        return_freed_memory()


def _first_block_input(model: nn.Module, blocks: nn.ModuleList, row: torch.Tensor) -> torch.Tensor:
    captured = capture_inputs(model, blocks, [row], keep_hidden=True)
    assert captured.hidden is not None
    return captured.hidden


__all__ = ["TensorSource", "evaluate_streaming", "split_by_block", "streaming_logits"]
