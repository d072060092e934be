"""Key-mode signing: statement payload -> DSSE envelope -> Sigstore bundle v0.3.

Signing is split from building the statement so that the exact payload bytes
are fixed once and then both signed and (by :func:`~.verify.verify_bundle`)
checked before anything is written.
"""

from __future__ import annotations

from .bundle import KeyModeBundle
from .dsse import IN_TOTO_PAYLOAD_TYPE, sign_envelope
from .keys import PrivateKey, fingerprint
from .statement import Statement


def sign_payload(payload: bytes, key: PrivateKey) -> bytes:
    """Sign in-toto payload bytes with ``key``; return the key-mode bundle JSON bytes."""
    envelope = sign_envelope(payload, key, IN_TOTO_PAYLOAD_TYPE)
    return KeyModeBundle.build(envelope, hint=fingerprint(key.public_key())).to_json_bytes()


def sign_statement(statement: Statement, key: PrivateKey) -> bytes:
    """Serialise ``statement`` canonically, sign it with ``key``; return the bundle JSON bytes."""
    return sign_payload(statement.to_payload(), key)
