"""PAdES signature of the rendered report (pyHanko), and its verification.

The report is rendered first (reproducible bytes), then signed as an
incremental update: the signed file starts with the exact rendered bytes, and
the update adds one invisible signature field whose CMS signature covers the
whole file (PAdES baseline B-B: signing certificate in the signed attributes,
no CMS signing-time attribute; the time in the signature dictionary is the
signer's own claim). Any PDF reader shows the signature panel, and any edit
after signing invalidates it. The private key is used only through
``key.sign`` so a key that lives in a PKCS#11 token works the same way.
"""

from __future__ import annotations

import asyncio
import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..attest.keys import PrivateKey, PublicKey, fingerprint
from ..errors import UnreadableInputError, UsageError

SIGNATURE_FIELD = "CustomerVerdictSignature"


@contextmanager
def _quiet_pyhanko() -> Iterator[None]:
    """Import pyHanko without its DSA deprecation notice (pyHanko imports DSA support; we never use DSA)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*DSA.*", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*DSA.*")
        yield


def _pyhanko_signer(key: PrivateKey, certificate: x509.Certificate):  # noqa: ANN202 - a pyhanko Signer
    """A pyHanko signer that signs through ``key.sign`` (file key or token key alike)."""
    from asn1crypto import algos
    from asn1crypto import x509 as asn1_x509

    with _quiet_pyhanko():
        from pyhanko.sign import signers
        from pyhanko_certvalidator.registry import SimpleCertificateStore

    cert = asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))
    is_ec = isinstance(key, ec.EllipticCurvePrivateKey)
    mechanism = algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa" if is_ec else "ed25519"})

    class KeySigner(signers.Signer):
        async def async_sign_raw(self, data: bytes, digest_algorithm: str, dry_run: bool = False) -> bytes:
            if dry_run:
                return bytes(72 if is_ec else 64)
            if is_ec:
                return key.sign(data, ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg]
            return key.sign(data)  # type: ignore[call-arg]

    return KeySigner(signing_cert=cert, cert_registry=SimpleCertificateStore.from_certs([cert]), signature_mechanism=mechanism)


def sign_pdf(pdf: bytes, key: PrivateKey, certificate: x509.Certificate, *, reason: str) -> bytes:
    """Append a PAdES B-B signature by ``key`` (named by ``certificate``) to ``pdf``; the original bytes stay a prefix."""
    with _quiet_pyhanko():
        from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
        from pyhanko.sign import fields, signers

    writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
    meta = signers.PdfSignatureMetadata(
        field_name=SIGNATURE_FIELD,
        md_algorithm="sha256" if isinstance(key, ec.EllipticCurvePrivateKey) else "sha512",  # Ed25519 in CMS: SHA-512 (RFC 8419)
        subfilter=fields.SigSeedSubFilter.PADES,
        reason=reason,
        name=certificate.subject.rfc4514_string(),
    )
    pdf_signer = signers.PdfSigner(meta, signer=_pyhanko_signer(key, certificate), new_field_spec=fields.SigFieldSpec(SIGNATURE_FIELD))
    out = io.BytesIO()
    asyncio.run(pdf_signer.async_sign_pdf(writer, output=out))
    signed = out.getvalue()
    if not signed.startswith(pdf):
        raise UsageError("PDF signing changed the rendered bytes (expected an incremental update)")
    return signed


@dataclass(frozen=True)
class PdfSignatureCheck:
    """What :func:`check_pdf_signature` established about a signed report."""

    signer_subject: str
    signing_time: datetime | None
    """The time in the signature: the signer's own claim (no timestamp authority in PAdES B-B)."""


def check_pdf_signature(pdf: bytes, customer_key: PublicKey, source: str) -> PdfSignatureCheck:
    """Verify the report's one PAdES signature: intact, made by ``customer_key``, covering the whole file.

    Raises ``ValueError`` with a sentence for the auditor when the signature
    is missing, broken, partial or by another key; an unreadable PDF is an
    input error (exit 2). The caller checks separately that the bytes before
    the signature's update are the re-rendered report.
    """
    with _quiet_pyhanko():
        from pyhanko.pdf_utils.misc import PdfReadError
        from pyhanko.pdf_utils.reader import PdfFileReader
        from pyhanko.sign.validation import async_validate_pdf_signature
        from pyhanko.sign.validation.status import SignatureCoverageLevel
        from pyhanko_certvalidator import ValidationContext

    try:
        reader = PdfFileReader(io.BytesIO(pdf), strict=False)
        embedded = list(reader.embedded_signatures)
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise UnreadableInputError(f"{source}: cannot read the PDF's signatures ({' '.join(str(exc).split())[:160]})") from None
    if len(embedded) != 1:
        raise ValueError(f"the PDF carries {len(embedded)} signatures, expected exactly one (the customer's)")
    sig = embedded[0]
    cert = x509.load_der_x509_certificate(sig.signer_cert.dump())
    if fingerprint(cert.public_key()) != fingerprint(customer_key):  # type: ignore[arg-type]
        raise ValueError("the PDF is signed by another key than the customer's")
    # Trust is the pinned key checked above, so the signer's own certificate is the only root; nothing is fetched.
    context = ValidationContext(trust_roots=[sig.signer_cert], allow_fetching=False, revocation_mode="soft-fail")
    try:
        status = asyncio.run(async_validate_pdf_signature(sig, signer_validation_context=context))
    except Exception as exc:  # noqa: BLE001 - pyHanko raises many kinds for malformed signatures
        raise ValueError(f"the PDF signature cannot be validated ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})") from None
    if not status.intact or not status.valid:
        raise ValueError("the PDF signature does not verify (the file was changed after signing, or the signature is corrupt)")
    if status.coverage is not SignatureCoverageLevel.ENTIRE_FILE:
        raise ValueError("the PDF signature does not cover the whole file (something was added after signing)")
    return PdfSignatureCheck(signer_subject=cert.subject.rfc4514_string(), signing_time=status.signer_reported_dt)
