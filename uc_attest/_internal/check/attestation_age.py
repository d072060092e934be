"""Check 3: the attestation's signing time and expiry against the customer's clock and the policy."""

from __future__ import annotations

from ..policy.rules import judge_signing_time
from .context import NOT_SIGNED, CheckContext, decided, skipped
from .results import CheckResult

NAME = "attestation_age"


def check_attestation_age(ctx: CheckContext) -> CheckResult:
    predicate = ctx.predicate
    if predicate is None:
        return skipped(NAME, NOT_SIGNED)
    assert ctx.attestation is not None
    logged_at = ctx.attestation.logged_at  # keyless: the log's verified time; key mode: None (the signer's claim is used)
    signing_time = logged_at or predicate.signed_at
    return decided(NAME, judge_signing_time(signing_time, predicate.expires_at, ctx.now, ctx.policy.attestation, logged=logged_at is not None))
