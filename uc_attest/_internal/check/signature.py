"""Check 1: the vendor's signature over the in-toto statement, verified with the customer's trust anchor.

First because nothing in the attestation means anything before it verifies.
Expiry is left to the policy (attestation_age), which decides how old is too old.
"""

from __future__ import annotations

from ..attest.errors import AttestationError
from ..attest.verify import verify_bundle
from .context import CheckContext, failed, passed
from .results import CheckResult

NAME = "signature"


def check_signature(ctx: CheckContext) -> CheckResult:
    """Verify the bundle; on success the verified attestation is left in ``ctx.attestation``."""
    try:
        ctx.attestation = verify_bundle(ctx.bundle_bytes, ctx.trust, allow_expired=True)
    except AttestationError as exc:
        return failed(NAME, f"{exc} ({type(exc).__name__}).", {"error": type(exc).__name__})
    signer = ctx.attestation.signer
    how = f"key sha256:{signer.key_fingerprint}" if signer.mode == "key" else f"{signer.identity} (issuer {signer.issuer})"
    return passed(NAME, f"The DSSE signature over the in-toto statement verifies for {how}.", {"mode": signer.mode})
