"""Check 6: every tensor rebuilt in the verification pass against the signed digest of its reconstruction."""

from __future__ import annotations

from .context import FAIL_FAST, CheckContext, failed, passed, skipped
from .results import CheckResult, CheckStatus, TensorCheck, block_label

NAME = "weights_bit_exact"


def check_weights(ctx: CheckContext) -> CheckResult:
    """Tensor rows go to ``ctx.tensors``."""
    required = ctx.policy.weights.require_bit_exact
    if ctx.pack_skipped:
        return skipped(NAME, FAIL_FAST, required)
    predicate = ctx.predicate
    if predicate is None:
        return skipped(NAME, "Not checked: without a verified signature there are no signed fingerprints.", required)
    rebuilt = {t.name: t for t in ctx.verified.report.tensors} if ctx.verified is not None else {}
    signed = {t.name: t for t in predicate.pack.tensors}
    bad: list[str] = []
    for name in sorted(set(signed) | set(rebuilt)):
        s, r = signed.get(name), rebuilt.get(name)
        computed = r.digest if (r is not None and r.ok) else None
        ok = s is not None and computed is not None and computed == s.digest
        if not ok:
            bad.append(name)
        kind = s.kind if s is not None else (r.kind if r is not None else "unknown")
        ctx.tensors.append(TensorCheck(name=name, block=block_label(name), kind=kind, attested_digest=s.digest if s else None,
                                       computed_digest=computed, status=CheckStatus.PASS if ok else CheckStatus.FAIL))  # fmt: skip
    details = {"tensors": len(ctx.tensors), "mismatched": len(bad)}
    total = len(ctx.tensors)
    if ctx.verified is None:
        return failed(NAME, "The weights could not be rebuilt: the pack cannot be read.", details, required)
    if bad:
        listing = f"{', '.join(bad[:3])}{'...' if len(bad) > 3 else ''}"
        return failed(NAME, f"{total - len(bad)} of {total} tensors identical; {len(bad)} differ or are missing ({listing}).", details, required)
    return passed(NAME, f"All {total} tensors rebuilt here are identical bit for bit to the signed fingerprints.", details, required)
