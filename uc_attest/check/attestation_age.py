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
    return decided(NAME, judge_signing_time(predicate.signed_at, predicate.expires_at, ctx.now, ctx.policy.attestation))
