"""X.509 certificates for the customer's PDF signature: self-signed at keygen, or the customer's own.

A PDF signature (PAdES) names its signer by certificate, so a reader's
signature panel can show who signed. ``attest keygen --organization ORG``
writes ``NAME.crt``: self-signed with the new key, naming the organisation,
for document signing (digitalSignature + nonRepudiation, no CA rights). A
customer with its own PKI passes its certificate instead (``--sign-cert``).
Either way the certificate's public key must be the signing key's: the
auditor pins that key (``--customer-key``), not the certificate chain.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..atomic import write_bytes_atomic
from ..errors import UnreadableInputError, UsageError
from ..safe_io import read_input_file
from .errors import KeyFileError
from .keys import MAX_KEY_FILE_BYTES, PrivateKey, fingerprint

CERT_VALID_DAYS = 3650
"""Ten years: the EU AI Act's retention period for test reports (Art. 18)."""


def self_signed_certificate(key: PrivateKey, organization: str, *, now: datetime | None = None) -> x509.Certificate:
    """A self-signed document-signing certificate for ``key`` naming ``organization``."""
    organization = organization.strip()
    if not organization or len(organization) > 64:
        raise UsageError("--organization must be 1 to 64 characters")
    start = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{organization} acceptance-check signer"),
        ]
    )
    public_key = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - timedelta(minutes=5))
        .not_valid_after(start + timedelta(days=CERT_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    algorithm = hashes.SHA256() if isinstance(key, ec.EllipticCurvePrivateKey) else None
    return builder.sign(key, algorithm)


def write_certificate(path: str | os.PathLike[str], certificate: x509.Certificate) -> None:
    write_bytes_atomic(path, certificate.public_bytes(serialization.Encoding.PEM), mode=0o644)


def certificate_path_for_key(key_ref: str) -> Path:
    """``NAME.crt`` beside ``NAME.key`` (the default certificate for a key file)."""
    path = Path(key_ref)
    return path.with_suffix(".crt") if path.suffix == ".key" else path.with_name(path.name + ".crt")


def load_certificate(path: str | os.PathLike[str]) -> x509.Certificate:
    """A PEM (or DER) certificate, or a one-line error (exit 2)."""
    p = Path(path)
    data = read_input_file(p, "certificate", MAX_KEY_FILE_BYTES)
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise UnreadableInputError(f"{p} is not an X.509 certificate (PEM or DER)") from None


def check_certificate_matches(certificate: x509.Certificate, key: PrivateKey, source: str) -> None:
    """Refuse a certificate whose public key is not the signing key's (the PDF signature would name someone else)."""
    cert_key = certificate.public_key()
    if not isinstance(cert_key, (ec.EllipticCurvePublicKey,)) and type(cert_key).__name__ != "Ed25519PublicKey":
        raise KeyFileError(f"{source}: certificate key type {type(cert_key).__name__} is not supported")
    if fingerprint(cert_key) != fingerprint(key.public_key()):  # type: ignore[arg-type]
        raise KeyFileError(f"{source} certifies another key than the signing key")
