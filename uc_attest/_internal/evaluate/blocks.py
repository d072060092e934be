"""Finding a model's decoder blocks and materialising one block at a time.

The model is built as a *skeleton*: every parameter lives on the meta device (no
memory), while buffers are real CPU tensors computed by the modules' own
constructors, so non-persistent buffers such as a rotary embedding's
``inv_freq`` are exactly what transformers would compute. A block is made real
by giving its parameters empty CPU storage and loading its checkpoint tensors
through transformers' own key conversion (renamings and expert fusions), and is
freed again by moving its parameters back to meta.

Decoder blocks are found without a per-model table: they are the
``nn.ModuleList`` that holds most of the model's parameters.
"""

from __future__ import annotations

import contextlib
import ctypes
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..architecture import causal_lm_class


@contextlib.contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Register every new parameter on the meta device; buffers stay on the CPU."""
    original = nn.Module.register_parameter

    def register(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        original(module, name, param)
        if param is not None and param.device.type != "meta":
            current = module._parameters[name]
            assert current is not None
            module._parameters[name] = type(current)(current.to("meta"), requires_grad=current.requires_grad)

    nn.Module.register_parameter = register  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]


def build_calibration_skeleton(config: Any, dtype: torch.dtype | None = None) -> nn.Module:
    """The model with meta parameters and real (constructor-computed) buffers, in eval mode.

    ``dtype``: the default dtype while the modules are built, as
    ``from_pretrained(dtype=...)`` sets it (buffers made in the default dtype
    then match a model loaded whole, which streaming evaluation relies on).
    """
    cls = causal_lm_class(config)
    with _parameters_on_meta():
        model = cls._from_config(config, dtype=dtype) if dtype is not None else cls._from_config(config)
    model.eval()
    return model


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The ``nn.ModuleList`` of decoder blocks: the one holding the most parameters."""
    best: tuple[int, str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            count = param_count(module)
            if best is None or count > best[0]:
                best = (count, name, module)
    if best is None or best[0] == 0:
        raise ValueError(f"{type(model).__name__} has no list of decoder blocks")
    return best[1], best[2]


def block_of(param_name: str, prefix: str) -> int | None:
    """Index of the block a parameter name belongs to, or None outside the blocks."""
    m = re.match(re.escape(prefix) + r"\.(\d+)\.", param_name)
    return int(m.group(1)) if m else None


def materialise(module: nn.Module, dtype: torch.dtype, device: torch.device | str = "cpu") -> None:
    """Give every meta parameter of ``module`` (recursively) empty storage on ``device``."""
    materialise_modules(module.modules(), dtype, device)


def materialise_modules(modules: Iterable[nn.Module], dtype: torch.dtype, device: torch.device | str = "cpu") -> None:
    """Give the meta parameters held directly by each of ``modules`` empty storage on ``device``.

    A parameter shared by several modules (tied input and output embeddings)
    gets one storage, so the tie survives.
    """
    made: dict[int, nn.Parameter] = {}
    for sub in modules:
        for name, param in list(sub._parameters.items()):
            if param is not None and param.device.type == "meta":
                if id(param) not in made:
                    made[id(param)] = nn.Parameter(torch.empty(param.shape, dtype=dtype, device=device), requires_grad=False)
                sub._parameters[name] = made[id(param)]


def buffers_to_device(model: nn.Module, device: torch.device | str) -> None:
    """Move every buffer of the skeleton (rotary frequencies, masks) to ``device``, dtypes unchanged."""
    for module in model.modules():
        for name, buf in list(module._buffers.items()):
            if buf is not None and buf.device != torch.device(device):
                module._buffers[name] = buf.to(device)


def release(module: nn.Module) -> None:
    """Move every parameter of ``module`` back to the meta device (frees its memory)."""
    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if param is not None and param.device.type != "meta":
                sub._parameters[name] = nn.Parameter(param.detach().to("meta"), requires_grad=False)


TRIM_EVERY_BLOCKS = 8  # blocks between two hand-backs of freed memory (return_freed_memory)
_blocks_since_trim = 0


def return_freed_memory() -> None:
    """Hand memory freed by the blocks just finished back to the operating system (glibc's malloc_trim), every 8th call.

    Why: glibc keeps freed heap memory for reuse, and with torch's varying
    tensor sizes that retained memory crept up by about 6 MiB per block on a
    32-block model (resident memory after the last block 775 MiB instead of
    ~600 MiB), which made peak memory depend on depth although nothing a block
    leaves behind is kept. Elsewhere than glibc this does nothing.

    Why not after every block: a trim hands back every free page, so the next
    block faults its whole working set in again, zero-filled by the kernel.
    On a SmolLM2 compression that was 7.5 million page faults and 21 s of
    system time; with no trim at all, 1.8 million and 10 s, and 7 s less
    wall time. Every TRIM_EVERY_BLOCKS blocks keeps the creep to that many
    blocks' worth (about 50 MiB) whatever the depth, at an eighth of the
    faults. Called once per block by every pass that streams a model.
    """
    global _blocks_since_trim
    _blocks_since_trim += 1
    if _blocks_since_trim < TRIM_EVERY_BLOCKS:
        return
    _blocks_since_trim = 0
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def load_checkpoint_tensors(model: nn.Module, state: dict[str, torch.Tensor], dtype: torch.dtype) -> None:
    """Load checkpoint-keyed tensors into already materialised parameters of ``model``.

    transformers' own loader applies the model's key renamings and conversions
    (for example stacking per-expert matrices into one fused parameter); keys of
    a fused target must all be present in one call.
    """
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import convert_and_load_state_dict_in_model
    from transformers.modeling_utils import LoadStateDictConfig
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        info, _ = convert_and_load_state_dict_in_model(
            model,
            {k: v.to(dtype) for k, v in state.items()},
            LoadStateDictConfig(weight_mapping=get_model_conversion_mapping(model), dtype=dtype),
        )
    finally:
        if enabled:
            hf_logging.enable_progress_bar()
    if info.unexpected_keys or info.mismatched_keys or info.conversion_errors:
        raise ValueError(f"cannot load block tensors: {info.unexpected_keys or info.mismatched_keys or info.conversion_errors}")
    for sub in model.modules():  # the loader may hand back tensors with grad enabled
        for name, param in list(sub._parameters.items()):
            if param is not None and param.requires_grad:
                sub._parameters[name] = nn.Parameter(param.detach(), requires_grad=False)


class _StopForward(Exception):
    pass


@dataclass
class Captured:
    """Inputs of the first block (one row per sample) and every block's keyword arguments by batch size."""

    hidden: torch.Tensor | None
    kwargs: list[dict[int, tuple[tuple[Any, ...], dict[str, Any]]]]  # per block: batch size -> (args, kwargs)


def first_output(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        return out[0]
    if hasattr(out, "last_hidden_state"):
        return out.last_hidden_state
    raise TypeError(f"unexpected block output {type(out).__name__}")


@torch.no_grad()
def capture_inputs(
    model: nn.Module, blocks: nn.ModuleList, chunks: list[torch.Tensor], keep_hidden: bool = True
) -> Captured:
    """Run the model up to its blocks: first block's hidden inputs and each block's kwargs.

    Every block's ``forward`` is temporarily replaced by a recorder that passes
    the hidden states through unchanged (the blocks have no weights yet), so the
    keyword arguments each block really receives (masks, position embeddings,
    which can differ between block kinds) are recorded; the model is run with
    ``use_cache=False`` so that no cache object is among them.
    """
    hidden: list[torch.Tensor] = []
    current = {"batch": 0}
    kwargs: list[dict[int, tuple[tuple[Any, ...], dict[str, Any]]]] = [{} for _ in blocks]
    last = len(blocks) - 1

    def recorder(index: int):  # type: ignore[no-untyped-def]
        def forward(hidden_states: torch.Tensor, *args: Any, **kw: Any) -> Any:
            batch = current["batch"]
            if index == 0 and keep_hidden:
                hidden.append(hidden_states.detach().clone())
            kept = {k: v for k, v in kw.items() if k not in ("past_key_values", "past_key_value")}
            kwargs[index].setdefault(batch, (tuple(args), kept))
            if index == last:
                raise _StopForward
            return hidden_states

        return forward

    for i, block in enumerate(blocks):
        block.forward = recorder(i)  # type: ignore[method-assign]
    try:
        for ids in chunks:
            current["batch"] = ids.shape[0]
            try:
                model(input_ids=ids, use_cache=False)
            except _StopForward:
                pass
    finally:
        for block in blocks:
            del block.forward
    return Captured(torch.cat(hidden) if hidden else None, kwargs)
