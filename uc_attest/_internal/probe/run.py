"""``attest probe``: the attestation checks of ``attest check`` up to the tokens, then the live endpoint.

Order and why:

1. the vendor's signature, the signer policy and the attestation's age, then
   one verification pass over the pack, its files against the signed subjects,
   its structure and rebuilt tensors, then the token file against its signed
   digest (the same check functions as ``attest check``): the windows sent and
   the NLLs compared with must be the signed ones, and the tokenizer used for
   the text probe must be the pack's verified bytes;
2. only then the endpoint: the model it serves, which log-probability API it
   offers, each probed window sent as token ids (no re-tokenisation), every
   position's token compared with the attested id; a few windows also sent as
   text, to compare the endpoint's tokenizer with the pack's;
3. the judgement (judge.py) into two required checks, ``probe_tokens`` and
   ``probe_behaviour``, and a :class:`~uc_attest._internal.check.probe_record.ProbeRecord`
   in results.json.

If anything in step 1 fails the endpoint is not contacted: the probe checks
are SKIP (required), so the verdict is FAIL and the results say why. An
endpoint that cannot be used at all (unreachable, too slow, an answer that is
not the API's) is an :class:`~uc_attest._internal.probe.client.EndpointError` (exit 2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..check.context import CheckContext, CheckInputs
from ..check.probe_record import ProbeLimits, ProbeRecord
from ..check.results import CheckResult, CheckStatus, Results, SignerIdentity
from ..errors import more_than_shown
from ..policy.model import ProbePolicy
from .api import API_NAMES, ApiName, Scored, offers, request_body, score
from .client import ClientLimits, EndpointError, EndpointRejected, ProbeClient
from .judge import judge, served_nll

TOKENS_CHECK = "probe_tokens"
BEHAVIOUR_CHECK = "probe_behaviour"
TITLES = {
    TOKENS_CHECK: "Endpoint scores exactly the attested tokens",
    BEHAVIOUR_CHECK: "Endpoint behaves like the attested model on the signed windows",
}
DEFAULT_MAX_WINDOWS = 256


@dataclass(frozen=True)
class ProbeInputs:
    """Everything ``attest probe`` needs; ``token`` is the bearer token from the environment (never recorded)."""

    url: str
    check: CheckInputs
    model: str | None = None
    token: str | None = None
    ca_bundle: Path | None = None
    limits: ClientLimits = field(default_factory=ClientLimits)
    max_windows: int = DEFAULT_MAX_WINDOWS


@dataclass
class ProbeOutcome:
    results: Results
    bundle_bytes: bytes


def _result(name: str, status: CheckStatus, summary: str, details: dict[str, Any] | None = None, required: bool = True) -> CheckResult:
    return CheckResult(name=name, title=TITLES[name], status=status, required=required, summary=summary, details=details or {})


def attestation_steps() -> list[Callable[[CheckContext], CheckResult | None]]:
    """``attest check``'s steps up to and including the signed tokens (no perplexity, no deployment)."""
    from ..check.attestation_age import check_attestation_age
    from ..check.eval_tokens import load_signed_tokens
    from ..check.pack_files import check_pack_files
    from ..check.pack_structure import check_pack_structure
    from ..check.run import read_pack
    from ..check.signature import check_signature
    from ..check.signer_trust import check_signer_trust
    from ..check.weights import check_weights

    return [check_signature, check_signer_trust, check_attestation_age, read_pack, check_pack_files, check_pack_structure,
            check_weights, load_signed_tokens]  # fmt: skip


def run_probe(inputs: ProbeInputs) -> ProbeOutcome:
    """Check the attestation, then probe the endpoint; the results carry both."""
    from ..check.run import build_context, build_results

    client = ProbeClient(inputs.url, token=inputs.token, ca_bundle=inputs.ca_bundle, limits=inputs.limits)  # URL and TLS errors before any work
    ctx = build_context(inputs.check)
    expected_signer = inputs.check.trust.expected_signer()
    for step in attestation_steps():
        outcome = step(ctx)
        if isinstance(outcome, CheckResult):
            ctx.checks.append(outcome)
    record = None
    if ctx.failed() or ctx.token_ids is None or ctx.verified is None:
        why = "Not probed: an attestation check above failed, so there is nothing trustworthy to compare the endpoint with."
        required = ctx.policy.probe.required
        ctx.checks += [_result(TOKENS_CHECK, CheckStatus.SKIP, why, required=required), _result(BEHAVIOUR_CHECK, CheckStatus.SKIP, why, required=required)]
    else:
        record, checks = _probe(ctx, client, inputs)
        ctx.checks += checks
    results = build_results(ctx, SignerIdentity(**expected_signer.model_dump(), verified=False))
    if record is not None:
        results = Results.model_validate({**results.model_dump(), "probe": record.model_dump()})
    return ProbeOutcome(results=results, bundle_bytes=ctx.bundle_bytes)


def select_windows(total: int, limit: int) -> list[int]:
    """All windows, or ``limit`` of them spread evenly over the signed ones (first and last included)."""
    if total <= limit:
        return list(range(total))
    if limit == 1:
        return [0]
    return sorted({round(i * (total - 1) / (limit - 1)) for i in range(limit)})


class _Session:
    """One probe's conversation with the endpoint: the model name, the API flavour, the tokenizer's spellings."""

    def __init__(self, client: ProbeClient, model: str, tokenizer: Any) -> None:
        self.client = client
        self.model = model
        self.tokenizer = tokenizer
        self.api: ApiName | None = None
        self._spellings: dict[int, set[str]] = {}

    def spellings(self, token_id: int) -> set[str]:
        """How an engine may write token ``token_id`` in an echo: its vocabulary entry, its decoded text, or ``token_id:N``."""
        found = self._spellings.get(token_id)
        if found is None:
            found = {f"token_id:{token_id}", str(self.tokenizer.convert_ids_to_tokens(token_id)),
                     self.tokenizer.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False)}  # fmt: skip
            self._spellings[token_id] = found
        return found

    def score(self, prompt: list[int] | str, expected: list[int]) -> Scored:
        if self.api is None:
            self.api = self._detect(prompt)
        response = self.client.post_json("completions", request_body(self.api, self.model, prompt))
        return score(self.api, response, expected, self.spellings)

    def _detect(self, prompt: list[int] | str) -> ApiName:
        """The first flavour whose answer carries its log-probabilities (an engine ignores or refuses what it does not know)."""
        refused = []
        for api in API_NAMES:
            try:
                response = self.client.post_json("completions", request_body(api, self.model, prompt))
            except EndpointRejected as exc:
                refused.append(f"{api}: HTTP {exc.status}")
                continue
            if offers(api, response):
                return api
            refused.append(f"{api}: not in the answer")
        raise EndpointError(f"{self.client.base}/completions returns no prompt log-probabilities ({'; '.join(refused)}); "
                            "attest probe needs vLLM's prompt_logprobs or the OpenAI echo with logprobs")  # fmt: skip


def served_model(client: ProbeClient, wanted: str | None) -> str:
    """The model to ask for: ``--model``, or the one model the endpoint lists."""
    try:
        listing = client.get_json("models")
    except EndpointRejected:
        listing = None
    names: list[str] = []
    if isinstance(listing, dict) and isinstance(listing.get("data"), list):
        names = [m["id"] for m in listing["data"] if isinstance(m, dict) and isinstance(m.get("id"), str)]
    if wanted is not None:
        if names and wanted not in names:
            raise EndpointError(f"{client.base}/models does not list {wanted!r} (it lists {', '.join(names[:5])})")
        return wanted
    if len(names) != 1:
        raise EndpointError(f"{client.base}/models lists {len(names)} models{': ' + ', '.join(names[:5]) if names else ''}; name one with --model")
    return names[0]


def pack_tokenizer(ctx: CheckContext) -> Any:
    """The pack's tokenizer from the verified bytes (:func:`uc_attest._internal.evaluate.tokens.verified_tokenizer`)."""
    from ..errors import UcError
    from ..evaluate.tokens import verified_tokenizer

    assert ctx.verified is not None
    try:
        return verified_tokenizer(ctx.verified)
    except UcError as exc:
        raise EndpointError(f"the pack's tokenizer cannot be loaded: {exc}") from None


def _probe(ctx: CheckContext, client: ProbeClient, inputs: ProbeInputs) -> tuple[ProbeRecord, list[CheckResult]]:
    from tqdm import tqdm

    policy: ProbePolicy = ctx.policy.probe
    m = ctx.predicate.measurement
    seq_len, signed = int(m.seq_len), list(m.pack.window_nll)
    ids = ctx.token_ids[: len(signed) * seq_len].reshape(len(signed), seq_len)
    chosen = select_windows(len(signed), inputs.max_windows)
    session = _Session(client, served_model(client, inputs.model), pack_tokenizer(ctx))
    pairs: list[tuple[int, float, float]] = []
    id_mismatches: list[str] = []
    text_mismatches: list[str] = []
    for index in tqdm(chosen, desc="probe", unit="window", disable=not inputs.check.progress, leave=False):
        expected = [int(v) for v in ids[index]]
        scored = session.score(expected, expected)
        id_mismatches += [f"window {index}: {text}" for text in scored.mismatches]
        nll = served_nll(scored.logprobs)
        if nll is not None and scored.tokens_equal:
            pairs.append((index, float(signed[index]), nll))
    text_windows = chosen[: policy.text_windows]
    for index in text_windows:
        text = session.tokenizer.decode([int(v) for v in ids[index]], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        expected = list(session.tokenizer(text)["input_ids"])
        scored = session.score(text, expected)
        text_mismatches += [f"window {index} as text: {t}" for t in scored.mismatches]
    ids_equal, tokenizer_equal = not id_mismatches, not text_mismatches
    mismatches = id_mismatches + text_mismatches
    verdict = judge(pairs, seq_len - 1, policy)
    record = ProbeRecord(
        endpoint=client.base, model=session.model, api=session.api or API_NAMES[0], transport=client.transport,
        authenticated=client.authenticated,
        limits=ProbeLimits(timeout_seconds=inputs.limits.timeout_seconds, retries=inputs.limits.retries,
                           max_response_bytes=inputs.limits.max_response_bytes, max_windows=inputs.max_windows,
                           time_limit_seconds=inputs.limits.time_limit_seconds),
        requests=client.requests, seconds=round(client.elapsed(), 3), seq_len=seq_len, windows_signed=len(signed), windows=verdict.rows,
        windows_outside=verdict.outside, tokens_equal=ids_equal, token_mismatches=mismatches[:20], text_windows=text_windows,
        tokenizer_equal=tokenizer_equal, signed_perplexity=verdict.signed_perplexity, served_perplexity=verdict.served_perplexity,
        perplexity_relative_difference=verdict.relative_difference, window_tolerance=policy.window_tolerance,
        total_tolerance=policy.total_tolerance, max_share_outside=policy.max_share_outside, min_windows=policy.min_windows,
    )  # fmt: skip
    how = f"{len(chosen)} windows sent as token ids ({session.api})"
    if ids_equal and tokenizer_equal:
        tokens = _result(TOKENS_CHECK, CheckStatus.PASS, f"{how}: every scored position is the attested token id; {len(text_windows)} windows sent as "
                                                          "text were tokenised by the endpoint exactly as by the pack's tokenizer.", required=policy.required)  # fmt: skip
    else:
        what = "the endpoint does not score the attested token ids" if not ids_equal else "the endpoint's tokenizer is not the pack's"
        tokens = _result(TOKENS_CHECK, CheckStatus.FAIL, f"{how}: {what}: {mismatches[0]}{more_than_shown(len(mismatches), 1)}", required=policy.required)
    unscored = len(chosen) - len(pairs)
    summary = verdict.summary + (f" {unscored} windows could not be scored (their tokens differ)." if unscored else "")
    behaviour = _result(BEHAVIOUR_CHECK, CheckStatus.PASS if verdict.ok and not unscored else CheckStatus.FAIL,
                        summary + " This shows behaviour on the attested windows, not which bytes the endpoint loaded.",
                        {"windows_outside": ",".join(str(i) for i in verdict.outside)}, required=policy.required)  # fmt: skip
    return record, [tokens, behaviour]


__all__ = ["BEHAVIOUR_CHECK", "TOKENS_CHECK", "ProbeInputs", "ProbeOutcome", "run_probe", "select_windows"]
