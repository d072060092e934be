"""Page 1's statement of who signed the verdict, or that nobody did.

Drawn from the customer's verification-summary bundle embedded in the report
(``verdict.sigstore.json``). At render time the bundle is only read, not
verified (the renderer holds no trust anchor); ``attest verify-report``
verifies it and re-renders the pages, so a page whose wording claims a
signature that does not verify cannot pass. A report without that bundle says
in plain words that its verdict is unsigned and is not evidence.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from ..errors import UsageError
from .names import VSA_ATTACHMENT


@dataclass(frozen=True)
class VerdictSignatureView:
    signed: bool
    title: str
    lines: list[str]


def _unverified_vsa(bundle: bytes):  # noqa: ANN202 - (bundle dict, SignedVerdict)
    """Parse a VSA bundle without verifying it (for wording and render-time consistency only)."""
    from ..attest.bundle import load_bundle_json, read_unverified_payload
    from ..attest.errors import AttestationError
    from ..check.vsa import parse_vsa

    try:
        return load_bundle_json(bundle), parse_vsa(read_unverified_payload(bundle))
    except AttestationError as exc:
        raise UsageError(f"{VSA_ATTACHMENT} is not a verification-summary bundle: {exc}") from None


def check_vsa_belongs(bundle: bytes, results_bytes: bytes) -> None:
    """Refuse to embed a verification summary that does not pin these exact results."""
    _data, verdict = _unverified_vsa(bundle)
    if verdict.results_sha256 != hashlib.sha256(results_bytes).hexdigest():
        raise UsageError("the signed verdict (VSA) does not pin these results (results.json SHA-256 differs)")


def _signer_words(data: dict) -> tuple[str, str]:  # type: ignore[type-arg]
    """(who signed, how trustworthy the time is) from the bundle's verification material."""
    material = data.get("verificationMaterial", {})
    if "publicKey" in material:
        hint = str(material["publicKey"].get("hint", "?"))
        return (f"the customer's key sha256:{hint}", "The time of the check is the signer's own claim (key mode: no independent timestamp).")
    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate(base64.b64decode(material["certificate"]["rawBytes"]))
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n.value) for n in san]
    except (KeyError, TypeError, ValueError, x509.ExtensionNotFound):
        names = ["(unreadable certificate)"]
    return (f"Sigstore identity {', '.join(names)}", "The signing time is the transparency log's, verified by attest verify-report.")


def describe_verdict_signature(attachments: dict[str, bytes]) -> VerdictSignatureView:
    """The page-1 box: signed by whom (and what that covers), or UNSIGNED."""
    bundle = attachments.get(VSA_ATTACHMENT)
    if bundle is None:
        return VerdictSignatureView(
            signed=False,
            title="Verdict UNSIGNED",
            lines=[
                "Nobody signed this verdict: the check ran without --sign-key, so anyone able to edit this file could have changed it.",
                "This report is not evidence of the verdict; only the vendor's attestation embedded in it is signed.",
            ],
        )
    data, verdict = _unverified_vsa(bundle)
    who, when = _signer_words(data)
    return VerdictSignatureView(
        signed=True,
        title="Verdict signed by the customer",
        lines=[
            f"Signed by {who}: a SLSA verification summary ({verdict.summary.verification_result}) that pins results.json "
            f"(sha256 {verdict.results_sha256}) and every pack file, embedded as {VSA_ATTACHMENT}.",
            when,
            "Check it with attest verify-report and the customer's trust anchor; the pages must re-render byte for byte.",
        ],
    )
