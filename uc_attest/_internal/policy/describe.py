"""A policy in plain sentences, for the report's first page and the CLI.

An auditor should not have to read TOML to know what "PASS" was judged
against; these sentences say it, and the report also prints the file itself.
"""

from __future__ import annotations

from .model import Policy


def _short(fp: str) -> str:
    return f"{fp[:16]}..."


def _signer_lines(policy: Policy) -> list[str]:
    s = policy.signer
    lines: list[str] = []
    if s.allow_key:
        if s.key_fingerprints:
            keys = ", ".join(_short(fp) for fp in s.key_fingerprints)
            lines.append(f"Signatures made with a vendor key are accepted only from the listed key(s): {keys}.")
        else:
            lines.append("Signatures made with a vendor key are accepted from the public key the customer supplies.")
    else:
        lines.append("Signatures made with a vendor key are not accepted.")
    if s.revoked_key_fingerprints:
        lines.append(f"{len(s.revoked_key_fingerprints)} key(s) are revoked and refused.")
    if s.allow_keyless:
        who = ", ".join(s.identities) if s.identities else "the identity the customer names"
        issuers = ", ".join(s.issuers) if s.issuers else "the issuer the customer names"
        lines.append(f"Keyless (certificate) signatures are accepted from {who}, vouched for by {issuers}.")
    else:
        lines.append("Keyless (certificate) signatures are not accepted.")
    if s.valid_from or s.valid_until:
        start = s.valid_from.isoformat() if s.valid_from else "any time"
        end = s.valid_until.isoformat() if s.valid_until else "no end"
        lines.append(f"The signature must have been made between {start} and {end}.")
    return lines


def _attestation_lines(policy: Policy) -> list[str]:
    a = policy.attestation
    age = f"at most {a.max_age_days:g} days old" if a.max_age_days is not None else "of any age"
    expiry = "its own expiry date is honoured" if a.honour_expiry else "its own expiry date is ignored"
    return [f"The attestation must be {age}; {expiry}."]


def _weights_lines(policy: Policy) -> list[str]:
    w = policy.weights
    lines = [
        "Rebuilt weights must be bit-for-bit identical to the ones the vendor signed."
        if w.require_bit_exact
        else "Rebuilt weights are compared with the signed ones, but a difference does not fail the verdict (advisory)."
    ]
    lines.append(
        "Files in the pack that the vendor did not sign are tolerated."
        if w.allow_unattested_files
        else "Every file in the pack must be covered by the vendor's signature."
    )
    return lines


def _perplexity_lines(policy: Policy) -> list[str]:
    p = policy.perplexity
    if not p.remeasure:
        lines = ["Perplexity (the model's quality figure) is not re-measured; the vendor's signed figure is reported as is."]
    elif p.exact:
        lines = ["Perplexity is re-measured here and must equal the vendor's signed figure exactly."]
    else:
        parts = []
        if p.relative_tolerance:
            parts.append(f"{p.relative_tolerance:.2%} of the signed value")
        if p.absolute_tolerance:
            parts.append(f"{p.absolute_tolerance:g} in absolute terms")
        lines = [f"Perplexity is re-measured here and may differ from the vendor's signed figure by at most {' or '.join(parts)} (whichever is larger)."]
    if p.remeasure and not p.required:
        lines.append("A perplexity difference is reported but does not fail the verdict (advisory).")
    if p.max_ratio_to_baseline is not None:
        lines.append(f"Perplexity may be at most {p.max_ratio_to_baseline:g} times that of the original, uncompressed model.")
    return lines


def weakened_checks(policy: Policy) -> list[str]:
    """One sentence per check this policy turns off or makes advisory (for the report's first page).

    A PASS under such a policy proves less than a PASS under the default one;
    the reader of page 1 must see that without opening the appendix.
    """
    a, w, p = policy.attestation, policy.weights, policy.perplexity
    out: list[str] = []
    if not a.honour_expiry:
        age = "and no age limit applies" if a.max_age_days is None else f"only the {a.max_age_days:g}-day age limit applies"
        out.append(f"Attestation expiry is OFF: the attestation's own expiry date is ignored, {age}.")
    elif a.max_age_days is None:
        out.append("Attestation age is NOT LIMITED: an attestation of any age passes until its own expiry date.")
    if not w.require_bit_exact:
        out.append("Bit-exact weights are ADVISORY: rebuilt weights that differ from the signed ones do not fail the verdict.")
    if w.allow_unattested_files:
        out.append("Unsigned files are TOLERATED: files in the pack that the vendor did not sign do not fail the verdict (they are never loaded).")
    if not p.remeasure:
        out.append("Perplexity re-measurement is OFF: the quality figure is the vendor's signed claim, not checked here.")
    elif not p.required:
        out.append("Perplexity match is ADVISORY: a re-measured figure outside the tolerance does not fail the verdict.")
    if not policy.probe.required:
        out.append("Endpoint probe is ADVISORY: an endpoint outside the probe tolerances does not fail the verdict of attest probe.")
    return out


def describe_policy(policy: Policy) -> list[str]:
    """Plain-English sentences that together state what ``policy`` demands."""
    verdict = ["The customer must sign this verdict (attest check --sign-key or --sign-sigstore)."] if policy.verdict.require_signature else []
    return _signer_lines(policy) + _attestation_lines(policy) + _weights_lines(policy) + _perplexity_lines(policy) + verdict
