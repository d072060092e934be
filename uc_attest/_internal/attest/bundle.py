"""Sigstore bundle v0.3 (JSON) holding a DSSE envelope.

Two shapes are produced and accepted:

* key mode (``attest sign --key``): ``verificationMaterial`` holds
  ``publicKey.hint`` (the key's fingerprint) and an explicit empty
  ``tlogEntries`` list: nothing is logged, trust comes from the public key the
  customer received out of band. Written and parsed by this module.
* keyless mode (``attest sign --sigstore``): ``verificationMaterial`` holds a
  Fulcio ``certificate`` and one Rekor entry. Written by and verified with the
  ``sigstore`` package (see :mod:`.keyless`); this module only recognises it.

The JSON keys are the protobuf-JSON (camelCase) names of the Sigstore
protobuf-specs, so any Sigstore client reads these files.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import Field, ValidationError

from ..pack.strict_json import StrictFrozenModel as _Model, first_validation_error, loads_strict_as
from .dsse import Envelope, b64decode_strict
from .errors import BundleFormatError

if TYPE_CHECKING:
    from .statement import Statement

BUNDLE_MEDIA_TYPE: Final = "application/vnd.dev.sigstore.bundle.v0.3+json"
MAX_BUNDLE_BYTES = 64 << 20  # every reader of a bundle (attest check, verify-report, report) caps it here


class BundleMode(StrEnum):
    KEY = "key"
    KEYLESS = "keyless"


class PublicKeyIdentifier(_Model):
    hint: str = Field(min_length=1)


class KeyVerificationMaterial(_Model):
    public_key: PublicKeyIdentifier = Field(alias="publicKey")
    tlog_entries: list[dict[str, Any]] = Field(alias="tlogEntries")


class KeyModeBundle(_Model):
    """A key-mode bundle: one DSSE envelope, the signing key named by its fingerprint, no log entries."""

    media_type: Literal["application/vnd.dev.sigstore.bundle.v0.3+json"] = Field(default=BUNDLE_MEDIA_TYPE, alias="mediaType")
    verification_material: KeyVerificationMaterial = Field(alias="verificationMaterial")
    dsse_envelope: Envelope = Field(alias="dsseEnvelope")

    @classmethod
    def build(cls, envelope: Envelope, hint: str) -> KeyModeBundle:
        return cls(
            mediaType=BUNDLE_MEDIA_TYPE,
            verificationMaterial=KeyVerificationMaterial(publicKey=PublicKeyIdentifier(hint=hint), tlogEntries=[]),
            dsseEnvelope=envelope,
        )

    def to_json_bytes(self) -> bytes:
        """Pretty JSON with protobuf-JSON names, an explicit empty ``tlogEntries``, a final newline."""
        data = self.model_dump(by_alias=True, mode="json", exclude_none=True)
        return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def load_bundle_json(raw: bytes) -> dict[str, Any]:
    """Parse bundle bytes strictly (no duplicate keys, no NaN) into a JSON object."""
    if len(raw) > MAX_BUNDLE_BYTES:
        raise BundleFormatError(f"bundle is larger than {MAX_BUNDLE_BYTES} bytes")
    data = loads_strict_as(raw, "bundle", BundleFormatError)
    if not isinstance(data, dict):
        raise BundleFormatError("bundle is not a JSON object")
    media_type = data.get("mediaType")
    if media_type != BUNDLE_MEDIA_TYPE:
        raise BundleFormatError(f"unsupported bundle mediaType {media_type!r} (expected {BUNDLE_MEDIA_TYPE})")
    if "dsseEnvelope" not in data:
        raise BundleFormatError("bundle carries no DSSE envelope (a message-signature bundle is not an attestation)")
    return data


def read_unverified_payload(raw: bytes) -> bytes:
    """The DSSE payload of a bundle, read WITHOUT checking its signature. The one reader of an unverified payload.

    Whatever verifies uses :func:`uc_attest._internal.attest.verify.verify_bundle` (through
    a trust anchor) instead. Each caller of this one says why reading without
    verifying is safe there:

    * ``attest bom`` without a trust anchor: the BOM states that the signature was not verified;
    * the report's page 1 at render time (``report/verdict_signature.py``): wording only,
      ``attest verify-report`` verifies the same bundle and re-renders the pages;
    * ``attest sign --sigstore``: a bundle Sigstore's client just signed, compared with our own payload;
    * the OpenSSF model signature (``attest/oms.py``): its file list, judged only beside
      ``model_signing``'s own verification of the same bytes.
    """
    data = load_bundle_json(raw)
    envelope = data["dsseEnvelope"]
    if not isinstance(envelope, dict) or not isinstance(envelope.get("payload"), str):
        raise BundleFormatError("bundle has no DSSE envelope payload")
    return b64decode_strict(envelope["payload"], "DSSE payload")


def read_unverified_statement(raw: bytes) -> Statement:
    """The in-toto statement of a bundle, parsed strictly but NOT verified (see :func:`read_unverified_payload`)."""
    from .statement import parse_statement

    return parse_statement(read_unverified_payload(raw))


def bundle_mode(data: dict[str, Any]) -> BundleMode:
    """Whether a parsed bundle is key mode (``publicKey``) or keyless (``certificate``)."""
    material = data.get("verificationMaterial")
    if not isinstance(material, dict):
        raise BundleFormatError("bundle has no verificationMaterial object")
    kinds = [k for k in ("publicKey", "certificate", "x509CertificateChain") if k in material]
    if len(kinds) != 1:
        raise BundleFormatError("verificationMaterial must hold exactly one of publicKey, certificate, x509CertificateChain")
    return BundleMode.KEY if kinds[0] == "publicKey" else BundleMode.KEYLESS


def parse_key_bundle(data: dict[str, Any]) -> KeyModeBundle:
    """Validate a key-mode bundle; it must have an explicit, empty ``tlogEntries``."""
    try:
        bundle = KeyModeBundle.model_validate(data)
    except ValidationError as exc:
        raise BundleFormatError(f"malformed key-mode bundle: {first_validation_error(exc)}") from None
    if bundle.verification_material.tlog_entries:
        raise BundleFormatError("key-mode bundle carries transparency-log entries; this verifier accepts only an empty tlogEntries")
    return bundle
