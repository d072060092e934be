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
    if signer.mode == "key":  # key mode: the time is the signer's own claim
        decision = judge_key_signer(signer.key_fingerprint or "", predicate.signed_at, ctx.policy.signer)
    else:  # keyless: the transparency log's verified integrated time, not the signedAt the signer wrote
        signing_time = ctx.attestation.logged_at or predicate.signed_at
        decision = judge_keyless_signer(signer.identity or "", signer.issuer or "", signing_time, ctx.policy.signer)
    return decided(NAME, decision)
