"""Pure decisions: apply one part of a policy to measured facts.

Each function takes facts already established by the check pipeline (a
verified key's fingerprint, a signing time, two perplexities) and returns a
:class:`Decision`: pass or fail plus one plain-English sentence an auditor can
read without knowing the code. Keeping them free of I/O makes the policy's
meaning testable on its own and keeps the pipeline thin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .model import (
    AttestationPolicy,
    PerplexityPolicy,
    SignerPolicy,
    normalize_fingerprint,
)


@dataclass(frozen=True)
class Decision:
    """Outcome of one rule: ``ok``, a one-sentence ``summary`` and machine ``details``."""

    ok: bool
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _in_window(signed_at: datetime, signer: SignerPolicy) -> Decision | None:
    if signer.valid_from and signed_at < signer.valid_from:
        return Decision(False, f"Signed at {_iso(signed_at)}, before the policy's validity window opens ({_iso(signer.valid_from)}).")
    if signer.valid_until and signed_at > signer.valid_until:
        return Decision(False, f"Signed at {_iso(signed_at)}, after the policy's validity window closed ({_iso(signer.valid_until)}).")
    return None


def judge_key_signer(fingerprint: str, signed_at: datetime, signer: SignerPolicy) -> Decision:
    """A signature made with a vendor key: is that key allowed and not revoked?"""
    fp = normalize_fingerprint(fingerprint)
    details = {"mode": "key", "key_fingerprint": fp}
    if not signer.allow_key:
        return Decision(False, "The policy does not accept signatures made with a vendor key (keyless only).", details)
    if fp in signer.revoked_key_fingerprints:
        return Decision(False, f"The signing key {fp[:16]}... is on the policy's revoked list.", details)
    if signer.key_fingerprints and fp not in signer.key_fingerprints:
        return Decision(False, f"The signing key {fp[:16]}... is not on the policy's list of trusted keys.", details)
    window = _in_window(signed_at, signer)
    if window is not None:
        return Decision(False, window.summary, details)
    listed = "is on the policy's list of trusted keys" if signer.key_fingerprints else "is the key supplied by the customer (the policy lists no keys)"
    return Decision(True, f"The signing key {fp[:16]}... {listed} and is not revoked.", details)


def judge_keyless_signer(identity: str, issuer: str, signed_at: datetime, signer: SignerPolicy) -> Decision:
    """A keyless (certificate) signature: is the signer identity and its issuer allowed?"""
    details = {"mode": "keyless", "identity": identity, "issuer": issuer}
    if not signer.allow_keyless:
        return Decision(False, "The policy does not accept keyless (certificate) signatures.", details)
    if signer.identities and identity not in signer.identities:
        return Decision(False, f"The signer identity {identity} is not allowed by the policy.", details)
    if signer.issuers and issuer not in signer.issuers:
        return Decision(False, f"The identity issuer {issuer} is not allowed by the policy.", details)
    window = _in_window(signed_at, signer)
    if window is not None:
        return Decision(False, window.summary, details)
    return Decision(True, f"Signed by {identity} (issuer {issuer}), which the policy allows.", details)


def judge_signing_time(
    signed_at: datetime,
    expires_at: datetime | None,
    checked_at: datetime,
    rules: AttestationPolicy,
    *,
    logged: bool = False,
) -> Decision:
    """Is the attestation recent enough, not from the future, and not expired?

    ``logged``: ``signed_at`` is the transparency log's verified integrated
    time (keyless); otherwise it is the signer's own claim (key mode), and the
    summary says so.
    """
    age = checked_at - signed_at
    details: dict[str, Any] = {
        "signed_at": _iso(signed_at),
        "time_source": "transparency log (verified integrated time)" if logged else "the signer's own claim (key mode)",
        "checked_at": _iso(checked_at),
        "age_days": round(age.total_seconds() / 86400, 3),
        "max_age_days": rules.max_age_days,
        "expires_at": _iso(expires_at) if expires_at else None,
    }
    if age < -timedelta(seconds=rules.max_clock_skew_seconds):
        return Decision(False, f"The signing time {_iso(signed_at)} lies in the future of this check ({_iso(checked_at)}).", details)
    if rules.honour_expiry and expires_at is not None and checked_at > expires_at:
        return Decision(False, f"The attestation expired on {_iso(expires_at)}.", details)
    days = max(age.total_seconds(), 0) / 86400
    if rules.max_age_days is not None and days > rules.max_age_days:
        return Decision(False, f"The attestation is {days:.1f} days old; the policy allows at most {rules.max_age_days:g}.", details)
    limit = f"at most {rules.max_age_days:g} allowed" if rules.max_age_days is not None else "no age limit in the policy"
    expiry = f", expires {_iso(expires_at)}" if expires_at else ""
    source = "time from the transparency log" if logged else "time as the signer states it"
    return Decision(True, f"Signed {days:.1f} days before this check ({source}; {limit}{expiry}).", details)


def perplexity_tolerance(attested: float, rules: PerplexityPolicy) -> float:
    """The largest allowed absolute difference for an attested perplexity."""
    return max(rules.absolute_tolerance, rules.relative_tolerance * abs(attested))


def judge_perplexity(attested: float, measured: float, rules: PerplexityPolicy) -> Decision:
    """Does the perplexity measured here match the attested one within the tolerance?"""
    diff = measured - attested
    rel = diff / attested if attested else math.inf
    details: dict[str, Any] = {
        "attested": attested,
        "measured": measured,
        "attested_hex": float(attested).hex(),
        "measured_hex": float(measured).hex(),
        "abs_difference": abs(diff),
        "rel_difference": abs(rel),
        "bit_identical": float(attested).hex() == float(measured).hex(),
    }
    if not (math.isfinite(attested) and math.isfinite(measured)):
        return Decision(False, "A perplexity value is not a finite number.", details)
    if rules.exact:
        if details["bit_identical"]:
            return Decision(True, f"Measured {measured:.6f}, identical bit for bit to the attested value (the policy requires exact equality).", details)
        return Decision(False, f"Measured {measured:.6f} but the vendor attested {attested:.6f}; the policy requires exact equality.", details)
    allowed = perplexity_tolerance(attested, rules)
    details["allowed_abs_difference"] = allowed
    if details["bit_identical"]:
        return Decision(True, f"Measured {measured:.6f}, identical bit for bit to the attested value (a difference of up to {allowed:.3g} was allowed).", details)
    verb = "within" if abs(diff) <= allowed else "outside"
    text = f"Measured {measured:.6f} against the attested {attested:.6f}: a difference of {abs(diff):.3g} ({abs(rel) * 100:.3g}%), {verb} the allowed {allowed:.3g}."
    return Decision(abs(diff) <= allowed, text, details)


def judge_baseline_ratio(perplexity: float, baseline: float, max_ratio: float | None) -> Decision:
    """Is the compressed model's perplexity within the allowed ratio to the original's?"""
    ratio = perplexity / baseline if baseline > 0 else math.inf
    details = {"perplexity": perplexity, "baseline": baseline, "ratio": ratio, "max_ratio": max_ratio}
    if max_ratio is None:
        return Decision(True, f"Quality ratio to the original model is {ratio:.4f}; the policy sets no limit.", details)
    loss = (ratio - 1) * 100
    if ratio <= max_ratio:
        return Decision(True, f"Perplexity is {ratio:.4f} times the original model's ({loss:+.2f}%), within the allowed {max_ratio:g}.", details)
    return Decision(False, f"Perplexity is {ratio:.4f} times the original model's ({loss:+.2f}%), above the allowed {max_ratio:g}.", details)
