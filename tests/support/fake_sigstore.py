"""A local, offline stand-in for Sigstore's public-good services, for tests only.

It plays three roles with keys it generates itself:

* a Fulcio-like CA: a self-signed root that issues a short-lived code-signing
  leaf certificate naming an identity (SAN) and an OIDC issuer (Fulcio's
  extension 1.3.6.1.4.1.57264.1.1), with an embedded precertificate SCT;
* a CT log: signs that SCT (RFC 6962 digitally-signed struct over the
  precertificate TBS and the issuer key hash);
* a Rekor-like log holding a single dsse/0.0.1 entry: inclusion proof in a
  tree of size one, a signed checkpoint (signed note) and a signed entry
  timestamp (inclusion promise) over the RFC 8785 canonical entry.

and writes a ``trusted_root.json`` naming all three. A bundle built here goes
through the very same ``sigstore`` offline verifier as a real one: chain at the
logged time, SCT, identity policy, inclusion proof, checkpoint, inclusion
promise, entry/envelope consistency, DSSE signature. What it does not exercise
is talking to the real services, which the tests never do.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from uc_attest._internal.attest.dsse import IN_TOTO_PAYLOAD_TYPE, pae

OIDC_ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
OIDC_ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
SCT_LIST = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")

LOG_ORIGIN = "fake-rekor.uc-attest.test"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _key_id(key: ec.EllipticCurvePublicKey) -> bytes:
    return hashlib.sha256(_spki(key)).digest()


def _der_octet_string(data: bytes) -> bytes:
    n = len(data)
    if n < 0x80:
        length = bytes([n])
    elif n < 0x100:
        length = bytes([0x81, n])
    else:
        length = bytes([0x82]) + struct.pack(">H", n)
    return b"\x04" + length + data


def _der_utf8(text: str) -> bytes:
    data = text.encode()
    assert len(data) < 0x80
    return b"\x0c" + bytes([len(data)]) + data


def _u24(n: int) -> bytes:
    return struct.pack(">I", n)[1:]


@dataclass
class FakeSigstore:
    """Keys and certificates of the fake services; ``start`` is when they became valid."""

    start: datetime = field(default_factory=lambda: datetime(2025, 1, 1, tzinfo=timezone.utc))

    def __post_init__(self) -> None:
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.ct_key = ec.generate_private_key(ec.SECP256R1())
        self.rekor_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "uc-attest-test"),
                x509.NameAttribute(NameOID.COMMON_NAME, "fake-fulcio-root"),
            ]
        )
        self.root_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.start - timedelta(days=1))
            .not_valid_after(self.start + timedelta(days=365 * 100))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.root_key.public_key()), critical=False)
            .sign(self.root_key, hashes.SHA256())
        )

    # -- trusted root ---------------------------------------------------------------------------

    def trusted_root(self) -> dict[str, object]:
        """The ``trusted_root.json`` a customer would copy: this CA, this CT log, this Rekor log."""
        valid = {"start": (self.start - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")}

        def log(key: ec.EllipticCurvePrivateKey, url: str) -> dict[str, object]:
            return {
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {"rawBytes": _b64(_spki(key.public_key())), "keyDetails": "PKIX_ECDSA_P256_SHA_256", "validFor": valid},
                "logId": {"keyId": _b64(_key_id(key.public_key()))},
            }

        return {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [log(self.rekor_key, f"https://{LOG_ORIGIN}")],
            "certificateAuthorities": [
                {
                    "subject": {"organization": "uc-attest-test", "commonName": "fake-fulcio-root"},
                    "uri": "https://fake-fulcio.uc-attest.test",
                    "certChain": {"certificates": [{"rawBytes": _b64(self.root_cert.public_bytes(serialization.Encoding.DER))}]},
                    "validFor": valid,
                }
            ],
            "ctlogs": [log(self.ct_key, "https://fake-ct.uc-attest.test")],
            "timestampAuthorities": [],
        }

    # -- Fulcio + CT ----------------------------------------------------------------------------

    def _leaf_builder(self, key: ec.EllipticCurvePrivateKey, identity: str, issuer: str, when: datetime, serial: int) -> x509.CertificateBuilder:
        san: x509.GeneralName = x509.UniformResourceIdentifier(identity) if "://" in identity else x509.RFC822Name(identity)
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.root_cert.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(when - timedelta(minutes=1))
            .not_valid_after(when + timedelta(minutes=10))
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.root_key.public_key()), critical=False)
            .add_extension(x509.SubjectAlternativeName([san]), critical=True)
            .add_extension(x509.UnrecognizedExtension(OIDC_ISSUER_V1, issuer.encode()), critical=False)
            .add_extension(x509.UnrecognizedExtension(OIDC_ISSUER_V2, _der_utf8(issuer)), critical=False)
        )

    def issue_certificate(self, key: ec.EllipticCurvePrivateKey, identity: str, issuer: str, when: datetime) -> x509.Certificate:
        """A Fulcio-like leaf for ``key`` with an embedded SCT from the fake CT log."""
        serial = x509.random_serial_number()
        precert = self._leaf_builder(key, identity, issuer, when, serial).sign(self.root_key, hashes.SHA256())
        tbs = precert.tbs_certificate_bytes
        millis = int(when.timestamp() * 1000)
        issuer_key_hash = _key_id(self.root_key.public_key())
        signed = (
            struct.pack(">BBQH", 0, 0, millis, 1)  # v1, certificate_timestamp, timestamp, precert_entry
            + issuer_key_hash
            + _u24(len(tbs))
            + tbs
            + struct.pack(">H", 0)  # no extensions
        )
        signature = self.ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        sct = (
            struct.pack(">B", 0)
            + _key_id(self.ct_key.public_key())
            + struct.pack(">QH", millis, 0)
            + struct.pack(">BBH", 4, 3, len(signature))  # sha256, ecdsa
            + signature
        )
        sct_list = struct.pack(">H", len(sct) + 2) + struct.pack(">H", len(sct)) + sct
        cert = (
            self._leaf_builder(key, identity, issuer, when, serial)
            .add_extension(x509.UnrecognizedExtension(SCT_LIST, _der_octet_string(sct_list)), critical=False)
            .sign(self.root_key, hashes.SHA256())
        )
        assert cert.tbs_precertificate_bytes == tbs
        return cert

    # -- Rekor ----------------------------------------------------------------------------------

    def _checkpoint(self, root_hash: bytes, size: int) -> str:
        note = f"{LOG_ORIGIN}\n{size}\n{_b64(root_hash)}\n"
        sig = self.rekor_key.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        hint = _key_id(self.rekor_key.public_key())[:4]
        return note + "\n" + f"\u2014 {LOG_ORIGIN} {_b64(hint + sig)}\n"

    def log_dsse(self, envelope: dict[str, object], cert: x509.Certificate, when: datetime) -> dict[str, object]:
        """A dsse/0.0.1 tlog entry for ``envelope`` at index 0 of a one-leaf log, with proof and promise."""
        payload = base64.b64decode(envelope["payload"])  # type: ignore[arg-type]
        pem = cert.public_bytes(serialization.Encoding.PEM)
        body = rfc8785.dumps(
            {
                "apiVersion": "0.0.1",
                "kind": "dsse",
                "spec": {
                    "envelopeHash": {"algorithm": "sha256", "value": hashlib.sha256(json.dumps(envelope).encode()).hexdigest()},
                    "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
                    "signatures": [{"signature": s["sig"], "verifier": _b64(pem)} for s in envelope["signatures"]],  # type: ignore[attr-defined]
                },
            }
        )
        integrated = int(when.timestamp())
        log_id = _key_id(self.rekor_key.public_key())
        leaf_hash = hashlib.sha256(b"\x00" + body).digest()
        promise = rfc8785.dumps({"body": _b64(body), "integratedTime": integrated, "logID": log_id.hex(), "logIndex": 0})
        set_sig = self.rekor_key.sign(promise, ec.ECDSA(hashes.SHA256()))
        return {
            "logIndex": "0",
            "logId": {"keyId": _b64(log_id)},
            "kindVersion": {"kind": "dsse", "version": "0.0.1"},
            "integratedTime": str(integrated),
            "inclusionPromise": {"signedEntryTimestamp": _b64(set_sig)},
            "inclusionProof": {
                "logIndex": "0",
                "rootHash": _b64(leaf_hash),
                "treeSize": "1",
                "hashes": [],
                "checkpoint": {"envelope": self._checkpoint(leaf_hash, 1)},
            },
            "canonicalizedBody": _b64(body),
        }

    # -- the whole keyless signing flow ---------------------------------------------------------

    def sign(self, payload: bytes, identity: str, issuer: str, when: datetime | None = None) -> bytes:
        """What ``sigstore`` keyless signing would return: bundle v0.3 JSON with certificate and one tlog entry."""
        when = when or self.start + timedelta(days=1)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self.issue_certificate(key, identity, issuer, when)
        sig = key.sign(pae(IN_TOTO_PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
        envelope = {"payload": _b64(payload), "payloadType": IN_TOTO_PAYLOAD_TYPE, "signatures": [{"sig": _b64(sig)}]}
        bundle = {
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {
                "certificate": {"rawBytes": _b64(cert.public_bytes(serialization.Encoding.DER))},
                "tlogEntries": [self.log_dsse(envelope, cert, when)],
            },
            "dsseEnvelope": envelope,
        }
        return (json.dumps(bundle, indent=2) + "\n").encode()
