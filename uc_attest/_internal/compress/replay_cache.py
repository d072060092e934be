"""Replaying the outputs of a block's finished sub-modules instead of recomputing them.

Calibrating one block runs it several times over the same calibration inputs:
once per group of linear maps (q/k/v, o, gate/up, down) to collect that
group's statistics with every earlier group already quantized, and once more
to produce the next block's inputs. Once every quantized weight inside a
direct child of the block (the attention module of a decoder layer, say) holds
its final reconstruction, that child computes the same output on every later
run: the block's input, the keyword arguments and its weights are all fixed,
and the CPU kernels are deterministic. So its output is kept after the first
full run and handed back on the later ones; the pack is bit for bit the one
full recomputation would give (on SmolLM2 this skips the attention of two of
the five runs per block).

Memory stays bounded: the kept outputs may take at most ``budget_bytes``
(the calibrating driver passes the size of the block's input activations, so
at most one more copy of them); a child whose outputs would not fit is simply
recomputed. Every hit is checked against a sample of the input it was recorded
with, so a model whose children do not behave as pure functions of their
inputs fails loudly instead of silently calibrating on wrong activations.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

PROBE_ELEMENTS = 4096


def _probe(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor | None:
    """An evenly strided sample of the child's first tensor input (its hidden states)."""
    x = args[0] if args and isinstance(args[0], torch.Tensor) else kwargs.get("hidden_states")
    if not isinstance(x, torch.Tensor):
        return None
    flat = x.detach().reshape(-1)
    return flat[:: max(1, flat.numel() // PROBE_ELEMENTS)].clone()


def _cacheable(output: Any) -> bool:
    leaves, _ = tree_flatten(output)
    return any(isinstance(v, torch.Tensor) for v in leaves) and all(v is None or isinstance(v, torch.Tensor) for v in leaves)


def _nbytes(output: Any) -> int:
    leaves, _ = tree_flatten(output)
    return sum(v.numel() * v.element_size() for v in leaves if isinstance(v, torch.Tensor))


def _copy(output: Any) -> Any:
    # a copy each way: the model may modify a returned tensor in place (residual adds)
    return tree_map(lambda v: v.clone() if isinstance(v, torch.Tensor) else v, output)


class TailInputs:
    """The input of a child's last dense map, per calibration batch, kept within ``budget_bytes`` (nothing beyond it)."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.used_bytes = 0
        self.inputs: dict[int, torch.Tensor] = {}
        self.over_budget = False
        self.unit: nn.Module | None = None  # the map, once it holds its final reconstruction
        self.template: tuple[Any, int, int] | None = None  # (tree spec, tensor position, leaves) once verified

    def keep(self, batch: int, x: torch.Tensor) -> None:
        size = x.numel() * x.element_size()
        if self.over_budget or self.used_bytes + size > self.budget_bytes:
            self.over_budget = True
            self.inputs.clear()
            return
        self.inputs[batch] = x.detach().clone()
        self.used_bytes += size


class ReplayCache:
    """Outputs of finished children of one block, keyed by (batch index, child, call number)."""

    def __init__(self, block: nn.Module, budget_bytes: int) -> None:
        self.block = block
        self.budget_bytes = budget_bytes
        self.used_bytes = 0
        self.entries: dict[tuple[int, str, int], tuple[torch.Tensor | None, Any]] = {}
        self.refused: set[str] = set()  # children whose outputs did not fit the budget
        self.batch = -1
        self.calls: dict[str, int] = {}
        self.hits = 0
        self.tails: dict[str, TailInputs] = {}  # finished children whose next output comes from their last map
        self.tail_hits = 0

    def start_batch(self, index: int) -> None:
        self.batch = index
        self.calls = {}

    def _wrap(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def forward(*args: Any, **kwargs: Any) -> Any:
            call = self.calls.get(name, 0)
            self.calls[name] = call + 1
            key = (self.batch, name, call)
            if key in self.entries:
                probe, output = self.entries[key]
                now = _probe(args, kwargs)
                if (probe is None) != (now is None) or (probe is not None and now is not None and not torch.equal(probe, now)):
                    raise RuntimeError(f"replay cache: {name} got a different input on a later run of the same block")
                self.hits += 1
                return _copy(output)
            tail = self.tails.get(name)
            if tail is not None and call == 0 and self.batch in tail.inputs:
                output = self._from_tail(name, tail, original, args, kwargs)
            else:
                output = original(*args, **kwargs)
            if name not in self.refused and _cacheable(output):
                size = _nbytes(output)
                if self.used_bytes + size <= self.budget_bytes:
                    self.entries[key] = (_probe(args, kwargs), _copy(output))
                    self.used_bytes += size
                else:
                    self.refused.add(name)
                    self._drop(name)
            return output

        return forward

    def set_tail(self, name: str, unit: nn.Module, tail: TailInputs) -> None:
        """Child ``name``'s next output, batch by batch, may come from ``unit`` (now coded) applied to ``tail``'s inputs."""
        if tail.over_budget or not tail.inputs:
            return
        tail.unit = unit
        self.tails[name] = tail

    def _from_tail(self, name: str, tail: TailInputs, original: Callable[..., Any], args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> Any:  # fmt: skip
        assert tail.unit is not None
        candidate = tail.unit(tail.inputs.pop(self.batch))
        if tail.template is None:  # first use: the child in full, and the shortcut only if it gives the very same output
            output = original(*args, **kwargs)
            leaves, spec = tree_flatten(output)
            tensors = [i for i, v in enumerate(leaves) if isinstance(v, torch.Tensor)]
            exact = (
                len(tensors) == 1
                and all(v is None for i, v in enumerate(leaves) if i != tensors[0])
                and leaves[tensors[0]].dtype == candidate.dtype
                and torch.equal(leaves[tensors[0]], candidate)
            )
            if exact:
                tail.template = (spec, tensors[0], len(leaves))
            else:
                del self.tails[name]
            return output
        spec, position, count = tail.template
        leaves = [None] * count
        leaves[position] = candidate
        self.tail_hits += 1
        return tree_unflatten(leaves, spec)

    def _drop(self, name: str) -> None:
        for key in [k for k in self.entries if k[1] == name]:
            _, output = self.entries.pop(key)
            self.used_bytes -= _nbytes(output)

    @contextlib.contextmanager
    def replaying(self, children: list[str]) -> Iterator[None]:
        """Within this context the named direct children of the block replay their kept outputs."""
        wrapped: list[tuple[nn.Module, Any]] = []  # (child, its own instance-level forward, if any)
        try:
            for name in children:
                if name in self.refused:
                    continue
                child = self.block.get_submodule(name)
                wrapped.append((child, child.__dict__.get("forward")))
                child.forward = self._wrap(name, child.forward)  # type: ignore[method-assign]
            yield
        finally:
            for child, own in wrapped:
                if own is None:
                    del child.forward
                else:
                    child.forward = own  # type: ignore[method-assign]

    def clear(self) -> None:
        self.entries.clear()
        self.used_bytes = 0
        self.tails.clear()
