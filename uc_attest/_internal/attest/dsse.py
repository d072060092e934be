"""DSSE (Dead Simple Signing Envelope) v1: the pre-authentication encoding and the envelope.

The signature covers ``PAE(payloadType, payload)``, never a re-serialisation of
the parsed statement: the verifier checks the signature over the payload bytes
exactly as they arrived and parses them only afterwards, so no JSON parser
quirk can make a signed document mean something else.

PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body, where LEN
is the length in bytes written as ASCII decimal without leading zeros.
"""

from __future__ import annotations

import base64
import binascii

from pydantic import Field, field_validator

from ..pack.strict_json import StrictFrozenModel as _Model
from .errors import BundleFormatError, SignatureError
from .keys import PrivateKey, PublicKey, sign_bytes, verify_bytes

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding of ``payload_type`` and ``payload``."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


def b64encode(data: bytes) -> str:
    """Standard base64 with padding, as protobuf JSON writes ``bytes`` fields."""
    return base64.b64encode(data).decode("ascii")


def b64decode_strict(text: str, what: str) -> bytes:
    """Decode canonical standard base64 (padded, unused bits zero), refusing anything else.

    Refusing non-canonical encodings means one byte string has one spelling,
    so a bundle cannot be altered without the change being refused, even where
    the decoded bytes would stay the same.
    """
    try:
        raw = text.encode("ascii")
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise BundleFormatError(f"{what} is not valid base64") from None
    if base64.b64encode(data) != raw:
        raise BundleFormatError(f"{what} is not canonically encoded base64")
    return data


class EnvelopeSignature(_Model):
    """One DSSE signature; ``keyid`` is optional and unauthenticated, so it is not used to pick a key."""

    sig: str
    keyid: str | None = None

    @field_validator("sig")
    @classmethod
    def _non_empty(cls, v: str) -> str:
        if not v:
            raise ValueError("signature is empty")
        return v


class Envelope(_Model):
    """A DSSE envelope as JSON: base64 payload, its type, and signatures."""

    payload: str
    payload_type: str = Field(alias="payloadType")
    signatures: list[EnvelopeSignature]

    def payload_bytes(self) -> bytes:
        return b64decode_strict(self.payload, "dsseEnvelope.payload")

    def signature_bytes(self) -> bytes:
        """The one signature's bytes; an envelope with zero or several signatures is refused."""
        if len(self.signatures) != 1:
            raise BundleFormatError(f"DSSE envelope must carry exactly one signature, found {len(self.signatures)}")
        return b64decode_strict(self.signatures[0].sig, "dsseEnvelope.signatures[0].sig")


def sign_envelope(payload: bytes, key: PrivateKey, payload_type: str = IN_TOTO_PAYLOAD_TYPE) -> Envelope:
    """Sign ``payload`` and wrap it in a one-signature envelope (no ``keyid``: the bundle's hint names the key)."""
    signature = sign_bytes(key, pae(payload_type, payload))
    return Envelope(payload=b64encode(payload), payloadType=payload_type, signatures=[EnvelopeSignature(sig=b64encode(signature))])


def verify_envelope(envelope: Envelope, key: PublicKey, payload_type: str = IN_TOTO_PAYLOAD_TYPE) -> bytes:
    """Return the payload bytes if the envelope's one signature verifies under ``key``.

    The payload type is checked before anything else so that a signature made
    for a different kind of document is never accepted as an attestation.
    """
    if envelope.payload_type != payload_type:
        raise BundleFormatError(f"DSSE payloadType is {envelope.payload_type!r}, expected {payload_type!r}")
    signature = envelope.signature_bytes()
    payload = envelope.payload_bytes()
    if not verify_bytes(key, signature, pae(envelope.payload_type, payload)):
        raise SignatureError("DSSE signature does not verify with the expected public key")
    return payload
