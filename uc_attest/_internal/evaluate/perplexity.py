"""Perplexity over consecutive non-overlapping windows: the acceptance-test method.

Method ``uc-ppl-v1``: the token ids are cut into consecutive windows of
``seq_len`` tokens (a short tail is dropped); each window is one forward pass
with batch size 1 and no cache; the NLL of tokens 1..seq_len-1 given their
prefix is computed from float32 logits and summed per window in float64;
perplexity = exp(total NLL / predicted tokens). Floats are also written as
``float.hex`` strings so that a comparison can be exact.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict
from tqdm import tqdm

from ..codec.reconstruct import TORCH_DTYPES
from ..errors import UnreadableInputError, UsageError
from ..progress import bar_disabled
from .settings import EvalSettings

METHOD = "uc-ppl-v1"


class EvalResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: str
    seq_len: int
    windows: int
    tokens: int  # predicted tokens
    compute_dtype: str
    nll_sum: float
    nll_sum_hex: str
    perplexity: float
    perplexity_hex: str
    window_nll: list[float]
    window_nll_hex: list[str]
    seconds: float


def windows_of(ids: torch.Tensor, seq_len: int, max_windows: int | None) -> torch.Tensor:
    if seq_len < 2:
        raise UsageError("--seq-len must be at least 2")
    n = ids.numel() // seq_len
    if max_windows is not None:
        n = min(n, max_windows)
    if n < 1:
        raise UsageError(f"the text has {ids.numel()} tokens, fewer than one window of {seq_len}")
    return ids[: n * seq_len].reshape(n, seq_len)


def check_token_range(ids: torch.Tensor, model: Any) -> None:  # model: a module with input embeddings, or a vocabulary size
    """Refuse ids the model has no embedding for (negative, or >= its vocabulary), before any forward pass.

    A token file or a tokenizer with more ids than the model's embedding matrix
    would otherwise end in an IndexError deep inside the embedding lookup.
    """
    vocab = model if isinstance(model, int) else int(model.get_input_embeddings().num_embeddings)
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab:
        bad = low if low < 0 else high
        raise UnreadableInputError(f"token id {bad} is outside the model's vocabulary of {vocab} ids (0 to {vocab - 1}); "
                                   "the tokens or the tokenizer do not belong to this model")  # fmt: skip


def window_nll(logits: torch.Tensor, inputs: torch.Tensor) -> float:
    """Summed NLL (float64) of tokens 1..n-1 of one window given its prefix, from the model's logits for it."""
    scores = logits[0, :-1].to(torch.float32)
    nll = torch.nn.functional.cross_entropy(scores, inputs[0, 1:], reduction="none")
    return float(nll.to(torch.float64).sum())


def eval_result(nlls: list[float], seq_len: int, compute_dtype: str, started: float) -> EvalResult:
    """The result of uc-ppl-v1 from the NLL of every window (however the windows were run)."""
    total = math.fsum(nlls)
    tokens = len(nlls) * (seq_len - 1)
    ppl = math.exp(total / tokens)
    return EvalResult(
        method=METHOD,
        seq_len=seq_len,
        windows=len(nlls),
        tokens=tokens,
        compute_dtype=compute_dtype,
        nll_sum=total,
        nll_sum_hex=total.hex(),
        perplexity=ppl,
        perplexity_hex=ppl.hex(),
        window_nll=nlls,
        window_nll_hex=[x.hex() for x in nlls],
        seconds=round(time.perf_counter() - started, 3),
    )


@torch.inference_mode()
def evaluate_tokens(model: Any, ids: torch.Tensor, settings: EvalSettings) -> EvalResult:
    """uc-ppl-v1 with the whole model in memory (on the device its parameters are on; ``settings.device`` is the caller's)."""
    start = time.perf_counter()
    windows = windows_of(ids, settings.seq_len, settings.max_windows)
    nlls: list[float] = []
    for row, logits in zip(windows, whole_model_logits(model, windows, settings), strict=True):
        nlls.append(window_nll(logits, row.unsqueeze(0).to(logits.device)))
    return eval_result(nlls, settings.seq_len, settings.compute_dtype, start)


def whole_model_logits(model: Any, windows: torch.Tensor, settings: EvalSettings) -> Iterator[torch.Tensor]:
    """The logits [1, seq_len, vocab] of each row of ``windows``, one forward pass (batch 1, no cache) per window."""
    check_token_range(windows, model)
    dtype = TORCH_DTYPES[settings.compute_dtype]
    if next(model.parameters()).dtype != dtype:
        model = model.to(dtype)  # bf16 -> float32 widening is exact
    device = next(model.parameters()).device
    for row in tqdm(windows, desc="eval", unit="window", disable=bar_disabled(settings.progress), leave=False):
        with torch.inference_mode():
            logits = model(input_ids=row.unsqueeze(0).to(device), use_cache=False).logits
        yield logits
