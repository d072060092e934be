"""results.json's ``probe`` section: what ``attest probe`` sent to a live endpoint and what came back.

Kept apart from results.py (which only refers to :class:`ProbeRecord`) so the
probe's evidence has one model of its own. Every figure an auditor would act
on is here: the endpoint and the API flavour used, the limits the client ran
under, each probed window's signed and served NLL, which windows fell outside
the tolerance, and what the probe proves (behaviour, not bytes).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PROBE_PROVES: str = (
    "A probe shows how the endpoint behaves on the attested evaluation windows: the log-probabilities it returns "
    "for exactly the signed token ids, within the policy's tolerance. It does not prove which bytes the endpoint "
    "loaded (a different model tuned to answer these windows could pass); uc verify --deployed proves the bytes."
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="strings")


class ProbeWindow(_Model):
    """One probed window: the signed NLL against the endpoint's, summed over its predicted tokens (nats)."""

    index: int = Field(ge=0, description="Window number in the signed token file (0-based).")
    signed_nll: float
    served_nll: float
    difference_per_token: float = Field(description="(served - signed) / predicted tokens: the mean shift per token, in nats.")
    within_tolerance: bool


class ProbeLimits(_Model):
    """The bounds the client ran under, stated so that an auditor knows what was tried."""

    timeout_seconds: float = Field(gt=0, description="Per request: connect plus read.")
    retries: int = Field(ge=0, description="Extra attempts after a timeout, a dropped connection, HTTP 429 or 5xx.")
    max_response_bytes: int = Field(gt=0)
    max_windows: int = Field(ge=1, description="Most windows probed (each one request).")
    time_limit_seconds: float = Field(gt=0, description="The whole probe, all requests together.")


class ProbeRecord(_Model):
    """The evidence of one ``attest probe`` run."""

    endpoint: str = Field(description="The base URL probed (no credentials; a bearer token is never recorded).")
    model: str = Field(description="The model name the endpoint was asked for.")
    api: Literal["prompt_logprobs", "echo_logprobs"] = Field(
        description="prompt_logprobs: vLLM's prompt log-probabilities by token id; echo_logprobs: the OpenAI completions echo with logprobs."
    )
    transport: str = Field(description="TLS verification used, or that the connection was plain HTTP.")
    authenticated: bool = Field(description="Whether a bearer token (from UC_ATTEST_PROBE_TOKEN) was sent.")
    proves: str = PROBE_PROVES
    limits: ProbeLimits
    requests: int = Field(ge=0, description="HTTP requests sent, retries included.")
    seconds: float = Field(ge=0)
    seq_len: int = Field(ge=2)
    windows_signed: int = Field(ge=1)
    windows: list[ProbeWindow]
    windows_outside: list[int] = Field(description="Indexes of the windows outside the per-window tolerance.")
    tokens_equal: bool = Field(description="Every position the endpoint scored is the attested token id.")
    token_mismatches: list[str] = Field(default_factory=list, description="Where the endpoint's tokens differ from the attested ids (first few).")
    text_windows: list[int] = Field(default_factory=list, description="Windows also sent as text, to compare the endpoint's tokenizer with the pack's.")
    tokenizer_equal: bool | None = Field(default=None, description="The endpoint tokenised every text window to the pack tokenizer's ids.")
    signed_perplexity: float | None = None
    served_perplexity: float | None = None
    perplexity_relative_difference: float | None = None
    window_tolerance: float
    total_tolerance: float
    max_share_outside: float
    min_windows: int

    @model_validator(mode="after")
    def _follows_from_the_windows(self) -> ProbeRecord:
        """Every derived figure must be what the windows' NLLs give: a hand-edited NLL, shift or list is refused."""
        tokens = self.seq_len - 1
        indexes = [w.index for w in self.windows]
        if len(set(indexes)) != len(indexes) or any(i >= self.windows_signed for i in indexes):
            raise ValueError("probe.windows: indexes must be unique and below windows_signed")
        for w in self.windows:
            if w.difference_per_token != (w.served_nll - w.signed_nll) / tokens:
                raise ValueError(f"probe window {w.index}: difference_per_token is not (served_nll - signed_nll) / {tokens}")
            if w.within_tolerance != (abs(w.difference_per_token) <= self.window_tolerance):
                raise ValueError(f"probe window {w.index}: within_tolerance contradicts window_tolerance")
        if self.windows_outside != [w.index for w in self.windows if not w.within_tolerance]:
            raise ValueError("probe.windows_outside is not the list of windows outside the tolerance")
        if self.windows:
            signed = math.exp(math.fsum(w.signed_nll for w in self.windows) / (tokens * len(self.windows)))
            served = math.exp(math.fsum(w.served_nll for w in self.windows) / (tokens * len(self.windows)))
            if (self.signed_perplexity, self.served_perplexity, self.perplexity_relative_difference) != (signed, served, served / signed - 1.0):
                raise ValueError("probe perplexities do not follow from the windows' NLLs")
        return self


__all__ = ["PROBE_PROVES", "ProbeLimits", "ProbeRecord", "ProbeWindow"]
