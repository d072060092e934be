"""PAdES signature of the rendered report (pyHanko writes it), and its verification (ours, not pyHanko's).

The report is rendered first (reproducible bytes), then signed as one
incremental update: the signed file starts with the exact rendered bytes, and
the update adds one invisible signature field whose CMS signature covers the
whole file (PAdES baseline B-B: signing certificate in the signed attributes,
no CMS signing-time attribute; the time in the signature dictionary is the
signer's own claim). The signer touches only the catalog and page 1 (see
:mod:`.signed_layout`), never the document information or XMP metadata, and
writes ECDSA signatures in low-s form so that a signature has one encoding.
The private key is used only through ``key.sign`` so a key that lives in a
PKCS#11 token works the same way.

Verification first checks the exact layout (:func:`.signed_layout.read_report_layout`),
then the CMS object as a closed set (one signer, its one certificate, exactly
the three signed attributes pyHanko writes, nothing unsigned) and the
signature over the byte range with the customer's pinned key. pyHanko's own
validator is not used: it judges coverage from sizes and prints tracebacks
from its difference analysis.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from ..attest.keys import PrivateKey, PublicKey, fingerprint
from ..errors import UsageError
from .signed_layout import SIGNATURE_FIELD, SignatureUpdate

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


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
                return low_s(key.sign(data, ec.ECDSA(hashes.SHA256())))  # type: ignore[call-arg]
            return key.sign(data)  # type: ignore[call-arg]

    return KeySigner(signing_cert=cert, cert_registry=SimpleCertificateStore(), signature_mechanism=mechanism)


def low_s(signature: bytes) -> bytes:
    """The ECDSA signature with ``s`` in the lower half of the group order: one encoding per signature, none to malleate."""
    r, s = decode_dss_signature(signature)
    return encode_dss_signature(r, min(s, P256_ORDER - s))


def sign_pdf(pdf: bytes, key: PrivateKey, certificate: x509.Certificate, *, reason: str) -> bytes:
    """Append a PAdES B-B signature by ``key`` (named by ``certificate``) to ``pdf``; the original bytes stay a prefix."""
    with _quiet_pyhanko():
        from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
        from pyhanko.sign import fields, signers

    class MetadataKeepingWriter(IncrementalPdfFileWriter):
        """Leaves the rendered document information and XMP metadata alone (pyHanko would redefine both)."""

        def _update_meta(self) -> None:
            return None

    writer = MetadataKeepingWriter(io.BytesIO(pdf), strict=False)
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
    signing_time: str | None
    """The signature dictionary's /M: the signer's own claim (no timestamp authority in PAdES B-B)."""


SIGNED_ATTRIBUTES = {"1.2.840.113549.1.9.3": "content-type", "1.2.840.113549.1.9.4": "message-digest", "1.2.840.113549.1.9.16.2.47": "signing-certificate-v2"}
"""By OID: asn1crypto names signing-certificate-v2 only once pyHanko has registered it, so names would depend on imports."""
_ALGORITHMS = {"sha256_ecdsa": "sha256", "ed25519": "sha512"}


def _one(values, what: str):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202 - asn1crypto sequences
    if values is None or len(values) != 1:
        raise ValueError(f"the CMS signature holds {0 if values is None else len(values)} {what}, not exactly one")
    return values[0]


def _verify_raw(public_key: PublicKey, signature: bytes, data: bytes, algorithm: str) -> None:
    if algorithm == "sha256_ecdsa" and isinstance(public_key, ec.EllipticCurvePublicKey):
        if decode_dss_signature(signature)[1] > P256_ORDER // 2 or low_s(signature) != signature:
            raise ValueError("the ECDSA signature in the PDF is not in the one (low-s, DER) form the signer writes")
        public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    elif algorithm == "ed25519" and isinstance(public_key, ed25519.Ed25519PublicKey):
        public_key.verify(signature, data)
    else:
        raise ValueError(f"the PDF is signed with {algorithm}, which is not the customer's key type")


def check_pdf_signature(pdf: bytes, update: SignatureUpdate, customer_key: PublicKey) -> PdfSignatureCheck:
    """Verify the one signature update (already found by :func:`.signed_layout.read_report_layout`) under ``customer_key``.

    Raises ``ValueError`` with a sentence for the auditor when the CMS object
    is not the signer's shape, names another key, or does not verify over
    every byte of the file but its own /Contents.
    """
    from asn1crypto import cms, tsp

    info = cms.ContentInfo.load(update.cms)
    if info["content_type"].native != "signed_data":
        raise ValueError("the PDF signature's CMS object is not SignedData")
    signed = info["content"]
    if signed["encap_content_info"]["content_type"].native != "data" or signed["encap_content_info"]["content"].native is not None:
        raise ValueError("the PDF signature is not a detached signature over the file")
    if len(signed["crls"]) if signed["crls"].native is not None else 0:
        raise ValueError("the PDF signature carries revocation lists, which the signer never adds")
    choice = _one(signed["certificates"], "certificates")
    if choice.name != "certificate":
        raise ValueError("the PDF signature's certificate is not an X.509 certificate")
    cert_der = choice.chosen.dump()
    cert = x509.load_der_x509_certificate(cert_der)
    if fingerprint(cert.public_key()) != fingerprint(customer_key):  # type: ignore[arg-type]
        raise ValueError("the PDF is signed by another key than the customer's")
    signer = _one(signed["signer_infos"], "signers")
    algorithm = signer["signature_algorithm"]["algorithm"].native
    digest_name = _ALGORITHMS.get(algorithm)
    if digest_name is None or signer["digest_algorithm"]["algorithm"].native != digest_name:
        raise ValueError(f"the PDF signature uses {algorithm} with {signer['digest_algorithm']['algorithm'].native}, not what the signer writes")
    if [a["algorithm"].native for a in signed["digest_algorithms"]] != [digest_name]:
        raise ValueError("the PDF signature declares other digest algorithms than the one it uses")
    sid = signer["sid"]
    if sid.name != "issuer_and_serial_number" or sid.chosen["serial_number"].native != cert.serial_number or sid.chosen["issuer"].dump() != choice.chosen.issuer.dump():
        raise ValueError("the PDF signature's signer is not its certificate")
    if signer["unsigned_attrs"].native is not None:
        raise ValueError("the PDF signature carries unsigned attributes, which the signer never adds")
    attributes = signer["signed_attrs"]
    found = [a["type"].dotted for a in attributes]
    if sorted(found) != sorted(SIGNED_ATTRIBUTES):
        names = ", ".join(SIGNED_ATTRIBUTES.get(oid, oid) for oid in found)
        raise ValueError(f"the PDF signature's signed attributes are {names}, not {', '.join(SIGNED_ATTRIBUTES.values())}")
    values = {a["type"].dotted: _one(a["values"], f"values of {a['type'].dotted}") for a in attributes}
    content_type = cms.ContentType.load(values["1.2.840.113549.1.9.3"].dump())
    if content_type.native != "data":
        raise ValueError("the PDF signature's signed content type is not data")
    if cms.OctetString.load(values["1.2.840.113549.1.9.4"].dump()).native != hashlib.new(digest_name, update.signed_bytes(pdf)).digest():
        raise ValueError("the PDF signature does not verify: the file was changed after signing")
    certs = tsp.SigningCertificateV2.load(values["1.2.840.113549.1.9.16.2.47"].dump())["certs"]
    if len(certs) != 1 or certs[0]["hash_algorithm"]["algorithm"].native != "sha256" or certs[0]["cert_hash"].native != hashlib.sha256(cert_der).digest():
        raise ValueError("the PDF signature's signed certificate reference is not its certificate")
    try:
        _verify_raw(customer_key, signer["signature"].native, b"\x31" + attributes.dump()[1:], algorithm)
    except InvalidSignature:
        raise ValueError("the PDF signature does not verify under the customer's key (the signature is corrupt)") from None
    return PdfSignatureCheck(signer_subject=cert.subject.rfc4514_string(), signing_time=update.signing_time)
