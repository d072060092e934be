"""Check 2: whether the policy trusts the signer (allowed and revoked keys or identities)."""

from __future__ import annotations

from ..policy.rules import judge_key_signer, judge_keyless_signer
from .context import NOT_SIGNED, CheckContext, decided, skipped
from .results import CheckResult

NAME = "signer_trust"


def check_signer_trust(ctx: CheckContext) -> CheckResult:
    if ctx.attestation is None:
        return skipped(NAME, NOT_SIGNED)
    signer, predicate = ctx.attestation.signer, ctx.attestation.predicate
    if signer.mode == "key":
        decision = judge_key_signer(signer.key_fingerprint or "", predicate.signed_at, ctx.policy.signer)
    else:
        decision = judge_keyless_signer(signer.identity or "", signer.issuer or "", predicate.signed_at, ctx.policy.signer)
    return decided(NAME, decision)
