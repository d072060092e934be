"""KL divergence of a model's next-token distribution from a reference model's, token by token.

Why beside perplexity: perplexity averages the loss on the text's actual next
tokens, so coding errors that move probability among the tokens the text did
not choose, or that help on one token and hurt on another, cancel out or stay
invisible (measured on SmolLM2: coding a whole block at 4 bits *lowered* the
loss on every text). KL(reference || model) compares the whole distribution at
every position with the original model's and is never negative, so it measures
damage directly; its 99th percentile shows the rare positions where the
compressed model goes badly wrong, which a mean hides.

Method ``uc-kl-v1``: the windows of uc-ppl-v1 (consecutive, non-overlapping,
batch size 1, no cache); at each predicted position (0..seq_len-2, the
positions whose NLL perplexity counts) KL = sum_v p_ref(v) (log p_ref(v) -
log p_model(v)) from float32 log-softmaxes of both models' float32 logits.
Streaming: the logits of one window of each model are in memory at a time; what
is kept is one float32 per token (the per-token KLs, for the exact percentile)
and a few numbers per window.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

import torch
from pydantic import BaseModel, ConfigDict

from .perplexity import EvalResult, eval_result, window_nll

METHOD = "uc-kl-v1"
PERCENTILE = 0.99


class WindowKl(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mean: float
    p99: float
    max: float


class KlResult(BaseModel):
    """KL(reference || model) in nats per token, over the windows perplexity used."""

    model_config = ConfigDict(extra="forbid")

    method: str = METHOD
    direction: str = "KL(reference || model), nats per predicted token"
    reference: str
    windows: int
    tokens: int
    mean: float
    p99: float
    max: float
    per_window: list[WindowKl]
    reference_perplexity: float
    perplexity_ratio: float  # model perplexity / reference perplexity on the same windows


def token_kl(reference_logits: torch.Tensor, model_logits: torch.Tensor) -> torch.Tensor:
    """Per-position KL(reference || model) [positions] of two [positions, vocab] logit tensors (float32)."""
    if reference_logits.shape != model_logits.shape:
        from ..errors import UsageError

        raise UsageError(f"the reference's logits {tuple(reference_logits.shape)} and the model's {tuple(model_logits.shape)} "
                         "differ: the two models do not share a vocabulary")  # fmt: skip
    ref = torch.log_softmax(reference_logits.to(torch.float32), dim=-1)
    mod = torch.log_softmax(model_logits.to(torch.float32).to(ref.device), dim=-1)
    return (ref.exp() * (ref - mod)).sum(-1).clamp_min(0.0)


def _quantile(values: torch.Tensor, q: float) -> float:
    """The ``q`` quantile with linear interpolation (numpy's default), without torch.quantile's size limit."""
    if values.numel() == 0:
        return 0.0
    ordered = torch.sort(values.to(torch.float64)).values
    position = q * (ordered.numel() - 1)
    low = int(math.floor(position))
    high = min(low + 1, ordered.numel() - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def compare_logits(
    windows: torch.Tensor,
    model_logits: Iterable[torch.Tensor],
    reference_logits: Iterable[torch.Tensor],
    *,
    reference_label: str,
    compute_dtype: str,
) -> tuple[EvalResult, EvalResult, KlResult]:
    """The model's and the reference's uc-ppl-v1 results and uc-kl-v1, consuming one window of each at a time."""
    started = time.perf_counter()
    seq_len = int(windows.shape[1])
    nlls: list[float] = []
    ref_nlls: list[float] = []
    per_token = torch.empty(windows.shape[0] * (seq_len - 1), dtype=torch.float32)
    per_window: list[WindowKl] = []
    for w, (row, mine, theirs) in enumerate(zip(windows, model_logits, reference_logits, strict=True)):
        inputs = row.unsqueeze(0)
        nlls.append(window_nll(mine, inputs.to(mine.device)))
        ref_nlls.append(window_nll(theirs, inputs.to(theirs.device)))
        kl = token_kl(theirs[0, :-1], mine[0, :-1]).cpu()
        per_token[w * (seq_len - 1) : (w + 1) * (seq_len - 1)] = kl
        per_window.append(WindowKl(mean=float(kl.to(torch.float64).mean()), p99=_quantile(kl, PERCENTILE), max=float(kl.max())))
        del mine, theirs
    result = eval_result(nlls, seq_len, compute_dtype, started)
    reference = eval_result(ref_nlls, seq_len, compute_dtype, started)
    kl_result = KlResult(
        reference=reference_label,
        windows=len(nlls),
        tokens=int(per_token.numel()),
        mean=float(per_token.to(torch.float64).mean()),
        p99=_quantile(per_token, PERCENTILE),
        max=float(per_token.max()),
        per_window=per_window,
        reference_perplexity=reference.perplexity,
        perplexity_ratio=result.perplexity / reference.perplexity,
    )
    return result, reference, kl_result


__all__ = ["KlResult", "WindowKl", "compare_logits", "token_kl"]
