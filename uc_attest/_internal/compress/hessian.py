"""Input statistics of a block's linear maps, collected with forward hooks.

A *unit* is something that reads an input and owns quantized weights: a dense
linear map (``nn.Linear``, GPT-2's ``Conv1D``) or a fused mixture-of-experts
module (3-D ``gate_up_proj`` / ``down_proj``). For a dense unit the statistic is
H = sum x x^T over every token of its input. For experts it is per expert and
over the tokens the router sent to that expert: H_in[e] for the gate/up maps and
H_mid[e] (the activated intermediate) for the down map. The sum of H over all
tokens that entered the MoE layer is also kept: it is the fallback statistic of
the gate/up maps of an expert that no calibration token reached.

Units are grouped by execution order: consecutive units that read the very same
input tensor (q, k, v; gate, up) form one group and are quantized together, and
each group's statistics are collected with every earlier group already
quantized (sequential within the block as well as across blocks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


class StopBlock(Exception):
    """Raised by a hook once every unit of the current group has seen its input."""


def is_dense_unit(module: nn.Module) -> bool:
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, (nn.Linear, Conv1D))


def is_expert_unit(module: nn.Module) -> bool:
    gate_up = getattr(module, "gate_up_proj", None)
    down = getattr(module, "down_proj", None)
    return (
        "Experts" in type(module).__name__
        and isinstance(gate_up, torch.Tensor)
        and isinstance(down, torch.Tensor)
        and gate_up.ndim == 3
        and hasattr(module, "act_fn")
    )


GRAM_PANEL = 192  # columns per panel of gram(): measured fastest on a 2-core AVX512 CPU for widths 576 and 1536
BF16_GRAM_PANEL = 512  # the same with oneDNN's bf16 products (measured 256, 384, 512 on the same CPU)


@contextlib.contextmanager
def _bf16_products() -> Iterator[None]:
    """float32 matrix products that oneDNN may compute from bfloat16 inputs with float32 sums (restored on exit).

    torch older than the ``fp32_precision`` switch keeps its plain float32
    products: the same result up to the order of float32 sums, only slower.
    """
    matmul = getattr(torch.backends.mkldnn, "matmul", None)
    if matmul is None or not hasattr(matmul, "fp32_precision"):
        yield
        return
    saved = matmul.fp32_precision
    matmul.fp32_precision = "bf16"
    try:
        yield
    finally:
        matmul.fp32_precision = saved


def gram(x: torch.Tensor) -> torch.Tensor:
    """x^T x in float32 (float32 sums), exactly symmetric, computing only the panels on and above the diagonal.

    Not in the activations' bfloat16: a bf16 product rounds every Hessian entry
    to 8 significant bits, and GPTQ's inverse Cholesky factor of a 1%-damped,
    ill-conditioned H amplifies those errors into wrong error feedback (measured
    on SmolLM2: a perplexity ratio of 7.9 instead of about 1.02).

    Why panels: the Gram matrices of every calibration token are the largest
    single cost of a calibrated compression (41 of 185 s of a whole SmolLM2 run
    under cProfile, 2-core AVX512-BF16 CPU, before the bf16 products below).
    Panel i times the columns from i on, mirrored below the diagonal, does a
    little over half the multiply-adds of the full product and measured
    1.5-1.75x faster on the 2-core CPU (widths 1536 and 576); the mirror also
    makes H exactly symmetric, which the full product's rounding need not.

    Why bf16 products: where the activations are bfloat16 on the CPU (the
    calibration dtype wherever the CPU multiplies bf16 natively), every product
    of two of their entries is exact in float32 (8 x 8 significant bits fit in
    24), so oneDNN's bf16 mode, which multiplies the bf16 values and sums in
    float32, computes the float32 Gram matrix itself: 2.6-3x faster than the
    float32 panels on fresh [2048, 576] and [2048, 1536] inputs, with wider
    panels (BF16_GRAM_PANEL, measured best of 256-512), and an error to the
    float64 product measured 2.8x smaller. Every other input (float32
    activations, other devices) is multiplied in float32.
    """
    x32 = x.to(torch.float32)
    width = x32.shape[-1]
    bf16 = x.dtype == torch.bfloat16 and x.device.type == "cpu"
    step = BF16_GRAM_PANEL if bf16 else GRAM_PANEL
    out = torch.empty(width, width, dtype=torch.float32, device=x32.device)
    with _bf16_products() if bf16 else contextlib.nullcontext():
        for lo in range(0, width, step):
            hi = min(width, lo + step)
            panel = x32[:, lo:hi].t() @ x32[:, lo:]
            out[lo:hi, lo:] = panel
            out[hi:, lo:hi] = panel[:, hi - lo :].t()
    return out


def shrink(h: torch.Tensor, tokens: int) -> torch.Tensor:
    """Shrink a sample second moment toward its diagonal: (1 - a) H + a diag(H), a = min(1, dim / tokens).

    With few calibration tokens per input dimension, X^T X is (nearly) rank
    deficient and GPTQ pushes the quantization error into directions the
    calibration text never excited; on other text those directions are not
    empty and the error returns, amplified (measured on SmolLM2 with 8 x 256
    tokens: perplexity ratio 7.9). Shrinkage keeps the directions that the data
    supports and falls back to importance-weighted rounding where it does not.
    """
    dim = h.shape[0]
    alpha = min(1.0, dim / max(tokens, 1))
    out = h * (1.0 - alpha)
    out.diagonal().add_(h.diagonal() * alpha)
    return out


@dataclass
class UnitStats:
    h: torch.Tensor | None = None  # dense: [in, in]
    tokens: int = 0
    h_in: dict[int, torch.Tensor] = field(default_factory=dict)  # experts
    h_mid: dict[int, torch.Tensor] = field(default_factory=dict)
    expert_tokens: dict[int, int] = field(default_factory=dict)
    h_all: torch.Tensor | None = None

    def add(self, attr: str, key: int | None, value: torch.Tensor) -> None:
        if key is None:
            current = getattr(self, attr)
            setattr(self, attr, value if current is None else current + value)
        else:
            table = getattr(self, attr)
            table[key] = value if key not in table else table[key] + value


def _expert_inputs(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    names = ("hidden_states", "top_k_index", "top_k_weights")
    values = dict(zip(names, args))
    values.update({k: v for k, v in kwargs.items() if k in names})
    return values["hidden_states"], values["top_k_index"]


def _dense_hook(stats: list[UnitStats], on_call: Callable[[], None],
                keep: Callable[[torch.Tensor], None] | None = None) -> Callable[..., None]:  # fmt: skip
    """Forward *pre*-hook: the statistic is taken before the unit runs, so a stopping hook skips its product.

    ``stats`` holds one entry per unit that reads this very input tensor (q, k
    and v; gate and up): their common X^T X is computed once and credited to each.
    ``keep``, if given, receives the input itself (see replay_cache.TailInputs).
    """

    def hook(module: nn.Module, inputs: tuple[Any, ...]) -> None:
        x = inputs[0]
        if keep is not None:
            keep(x)
        x = x.reshape(-1, x.shape[-1])
        moment = gram(x)
        # one running sum, added to in place and shared by the group's units (their statistic is one and the same)
        total = moment if stats[0].h is None else stats[0].h.add_(moment)
        for unit_stats in stats:
            unit_stats.h = total
            unit_stats.tokens += x.shape[0]
        on_call()

    return hook


def _experts_hook(stats: UnitStats, on_call: Callable[[], None]) -> Callable[..., None]:
    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        hidden, top_k = _expert_inputs(module, args, kwargs)
        hidden = hidden.reshape(-1, hidden.shape[-1])
        top_k = top_k.reshape(hidden.shape[0], -1)
        stats.add("h_all", None, gram(hidden))
        transposed = bool(getattr(module, "is_transposed", False))
        for e in range(module.gate_up_proj.shape[0]):
            rows = (top_k == e).any(-1).nonzero().squeeze(-1)
            if rows.numel() == 0:
                continue
            x = hidden[rows]
            stats.add("h_in", e, gram(x))
            stats.expert_tokens[e] = stats.expert_tokens.get(e, 0) + int(rows.numel())
            w = module.gate_up_proj[e].to(x.dtype)
            h = x @ w if transposed else nn.functional.linear(x, w)
            bias = getattr(module, "gate_up_proj_bias", None)
            if isinstance(bias, torch.Tensor):
                h = h + bias[e].to(h.dtype)
            gate, up = h.chunk(2, dim=-1)
            stats.add("h_mid", e, gram(module.act_fn(gate) * up))
        on_call()

    return hook


def attach(units: dict[str, nn.Module], stats: dict[str, UnitStats], stop_when_done: bool, shared_input: bool = False,
           keep: Callable[[torch.Tensor], None] | None = None) -> list[Any]:  # fmt: skip
    """Hooks on ``units`` accumulating into ``stats``; optionally stop the block once all were called.

    ``shared_input``: the units are dense and read one tensor (a group found by
    :func:`discover_groups`, in execution order); only the first gets a hook,
    which credits the statistic to all of them, so that with ``stop_when_done``
    none of their products is computed. ``keep`` (with ``shared_input``)
    receives that input tensor on every call.
    """
    called: set[str] = set()
    handles = []

    def on_call_of(names: list[str]) -> Callable[[], None]:
        def on_call() -> None:
            called.update(names)
            if stop_when_done and len(called) == len(units):
                called.clear()
                raise StopBlock

        return on_call

    if shared_input:
        if not all(is_dense_unit(m) for m in units.values()):
            raise ValueError("shared_input needs dense units only")
        first = next(iter(units))
        hook = _dense_hook([stats[n] for n in units], on_call_of(list(units)), keep)
        return [units[first].register_forward_pre_hook(hook)]
    for name, module in units.items():
        on_call = on_call_of([name])
        if is_expert_unit(module):
            handles.append(module.register_forward_pre_hook(_experts_hook(stats[name], on_call), with_kwargs=True))
        else:
            handles.append(module.register_forward_pre_hook(_dense_hook([stats[name]], on_call)))
    return handles


def discover_groups(block: nn.Module, units: dict[str, nn.Module], run: Callable[[], object]) -> list[list[str]]:
    """Groups of units in execution order; units reading the same tensor share a group.

    Units never called on calibration data form no group (they get no statistics).
    """
    order: list[tuple[str, torch.Tensor | None]] = []
    seen: set[str] = set()
    handles = []
    for name, module in units.items():
        if is_expert_unit(module):

            def pre(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], name: str = name) -> None:
                if name not in seen:
                    seen.add(name)
                    order.append((name, None))

            handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        else:

            def fwd(mod: nn.Module, inputs: tuple[Any, ...], output: Any, name: str = name) -> None:
                if name not in seen:
                    seen.add(name)
                    order.append((name, inputs[0]))  # keeps the tensor alive: identity comparisons stay valid

            handles.append(module.register_forward_hook(fwd))
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    groups: list[list[str]] = []
    previous: torch.Tensor | None = None
    for name, x in order:
        if groups and x is not None and previous is not None and x is previous:
            groups[-1].append(name)
        else:
            groups.append([name])
        previous = x
    return groups
