"""The two ways an OpenAI-compatible completions endpoint returns prompt log-probabilities.

* ``prompt_logprobs`` (vLLM): ``"prompt_logprobs": 0`` returns, for every
  prompt position after the first, a map from token id to its log-probability
  that holds the prompt's own token. Ids, not strings: the endpoint's tokens
  are compared with the attested ids directly.
* ``echo_logprobs`` (the OpenAI completions API, also vLLM's): ``"echo": true,
  "logprobs": 0`` returns the prompt's tokens as strings with their
  log-probabilities (the first is null). The strings are compared with the
  pack tokenizer's spellings of the attested ids.

The prompt is a list of token ids, so nothing is re-tokenised on the way; a
text prompt (the tokenizer probe) is the one exception. Responses are parsed
strictly: a field of the wrong type, a log-probability that is not a finite
number at most 0, or a length that cannot belong to the prompt is a lie about
the format (exit 2); a token that is not the attested one is evidence (FAIL).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from .client import EndpointError

PROMPT_LOGPROBS: Literal["prompt_logprobs"] = "prompt_logprobs"
ECHO_LOGPROBS: Literal["echo_logprobs"] = "echo_logprobs"
ApiName = Literal["prompt_logprobs", "echo_logprobs"]
API_NAMES: tuple[ApiName, ...] = (PROMPT_LOGPROBS, ECHO_LOGPROBS)
LOGPROB_CEILING = 1e-4  # a log-probability above this is not one (a little above 0 is rounding of log_softmax)
MAX_MISMATCHES = 5


def request_body(api: ApiName, model: str, prompt: Sequence[int] | str) -> dict[str, Any]:
    """One completions request scoring ``prompt`` (one token generated: some engines refuse zero)."""
    body: dict[str, Any] = {"model": model, "prompt": list(prompt) if not isinstance(prompt, str) else prompt, "max_tokens": 1, "temperature": 0.0}
    if api == PROMPT_LOGPROBS:
        body["prompt_logprobs"] = 0
    else:
        body["echo"] = True
        body["logprobs"] = 0
    return body


class _Lenient(BaseModel):
    """Engines add fields of their own: only the fields read here are validated (strictly)."""

    model_config = ConfigDict(extra="ignore", strict=True)


def _logprob(value: float) -> float:
    if not (value == value and -1e30 < value <= LOGPROB_CEILING):
        raise ValueError(f"{value!r} is not a log-probability")
    return value


class _Entry(_Lenient):
    logprob: float

    @field_validator("logprob")
    @classmethod
    def _is_logprob(cls, value: float) -> float:
        return _logprob(value)


class _PromptChoice(_Lenient):
    prompt_logprobs: list[dict[str, _Entry] | None] | None = None
    prompt_token_ids: list[int] | None = None


class _EchoLogprobs(_Lenient):
    tokens: list[str]
    token_logprobs: list[float | None]


class _EchoChoice(_Lenient):
    logprobs: _EchoLogprobs | None = None


class _Response(_Lenient):
    choices: list[dict[str, Any]]


@dataclass
class Scored:
    """One prompt as the endpoint scored it: per position the token(s) it names and the log-probability of the expected token."""

    positions: int
    logprobs: list[float | None]  # index i: log P(expected[i] | prefix); None where the endpoint gave none (position 0) or names another token
    mismatches: list[str] = field(default_factory=list)

    @property
    def tokens_equal(self) -> bool:
        return not self.mismatches


def offers(api: ApiName, response: Any) -> bool:
    """Whether ``response`` carries ``api``'s log-probabilities at all (an engine ignores parameters it does not know)."""
    choice = _one_choice(response)
    key = "prompt_logprobs" if api == PROMPT_LOGPROBS else "logprobs"
    return choice.get(key) is not None


def _one_choice(response: Any) -> dict[str, Any]:
    try:
        parsed = _Response.model_validate(response)
    except ValidationError:
        raise EndpointError("the completions answer has no 'choices' list") from None
    if len(parsed.choices) != 1:
        raise EndpointError(f"the completions answer has {len(parsed.choices)} choices for one prompt")
    return parsed.choices[0]


def score(api: ApiName, response: Any, expected: Sequence[int], spellings: Callable[[int], set[str]]) -> Scored:
    """The endpoint's scores of ``expected`` from ``response``; a malformed answer raises :class:`EndpointError`."""
    choice = _one_choice(response)
    try:
        if api == PROMPT_LOGPROBS:
            return _score_prompt_logprobs(_PromptChoice.model_validate(choice), expected)
        return _score_echo(_EchoChoice.model_validate(choice), expected, spellings)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise EndpointError(f"the endpoint's {api} answer is malformed at {where}: {first['msg'].removeprefix('Value error, ')}") from None


def _score_prompt_logprobs(choice: _PromptChoice, expected: Sequence[int]) -> Scored:
    entries = choice.prompt_logprobs
    if entries is None:
        raise EndpointError("the answer has no prompt_logprobs")
    n = len(expected)
    out = Scored(positions=len(entries), logprobs=[None] * n)
    if choice.prompt_token_ids is not None and list(choice.prompt_token_ids) != list(expected):
        out.mismatches.append(f"prompt_token_ids differ from the attested ids (endpoint {len(choice.prompt_token_ids)} ids, attested {n})")
    if len(entries) != n:
        out.mismatches.append(f"the endpoint scored {len(entries)} prompt tokens, not the {n} attested ones")
        return out
    if entries[0] is not None and str(expected[0]) not in entries[0]:
        out.mismatches.append(f"position 0: the endpoint names token(s) {sorted(entries[0])[:3]}, not the attested id {expected[0]}")
    for i in range(1, n):
        entry = entries[i]
        if entry is None:
            raise EndpointError(f"prompt_logprobs[{i}] is null (only the first position may be)")
        for key in entry:
            if not key.isdigit():
                raise EndpointError(f"prompt_logprobs[{i}] has a key {key[:20]!r} that is not a token id")
        hit = entry.get(str(expected[i]))
        if hit is None:
            if len(out.mismatches) < MAX_MISMATCHES:
                out.mismatches.append(f"position {i}: the endpoint scored token(s) {sorted(entry, key=int)[:3]}, not the attested id {expected[i]}")
            continue
        out.logprobs[i] = hit.logprob
    return out


def _score_echo(choice: _EchoChoice, expected: Sequence[int], spellings: Callable[[int], set[str]]) -> Scored:
    lp = choice.logprobs
    if lp is None:
        raise EndpointError("the answer has no logprobs")
    if len(lp.tokens) != len(lp.token_logprobs):
        raise EndpointError(f"logprobs.tokens ({len(lp.tokens)}) and logprobs.token_logprobs ({len(lp.token_logprobs)}) differ in length")
    n = len(expected)
    out = Scored(positions=len(lp.tokens), logprobs=[None] * n)
    if len(lp.tokens) not in (n, n + 1):  # the prompt echoed, plus at most the one generated token
        out.mismatches.append(f"the endpoint echoed {len(lp.tokens)} tokens for a prompt of {n} attested ones")
        return out
    for i in range(n):
        value = lp.token_logprobs[i]
        if value is not None:
            _check_logprob(value, f"logprobs.token_logprobs[{i}]")
        elif i > 0:
            raise EndpointError(f"logprobs.token_logprobs[{i}] is null (only the first position may be)")
        if lp.tokens[i] not in spellings(expected[i]):
            if len(out.mismatches) < MAX_MISMATCHES:
                out.mismatches.append(f"position {i}: the endpoint echoed {lp.tokens[i][:20]!r}, not attested id {expected[i]} ({sorted(spellings(expected[i]))[0][:20]!r})")
            continue
        if i > 0:
            out.logprobs[i] = value
    return out


def _check_logprob(value: float, where: str) -> None:
    try:
        _logprob(value)
    except ValueError as exc:
        raise EndpointError(f"{where}: {exc}") from None


__all__ = ["API_NAMES", "ECHO_LOGPROBS", "PROMPT_LOGPROBS", "ApiName", "Scored", "offers", "request_body", "score"]
