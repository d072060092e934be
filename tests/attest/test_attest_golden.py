"""Golden files: bundles and keys written by uc_attest 0.1 must verify and load in every later version.

The files under tests/golden/attest/v1 were written once by make_golden.py and
are never regenerated; a change that breaks these tests breaks customers'
existing attestations.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from support.statements import make_statement

from uc_attest._internal.attest import KeyAnchor, PREDICATE_TYPE, KeyMismatchError, SignatureError, verify_bundle
from uc_attest._internal.attest.errors import AttestationError, KeyFileError
from uc_attest._internal.attest.keys import fingerprint, load_private_key, load_public_key

V1 = Path(__file__).parent.parent / "golden" / "attest" / "v1"
AT = datetime(2030, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("name", ["p256", "ed25519"])
def test_golden_key_bundles_verify(name: str) -> None:
    verified = verify_bundle(V1 / f"{name}.sigstore.json", KeyAnchor(V1 / f"{name}.pub"), at=AT)
    assert verified.payload == (V1 / "statement.json").read_bytes()
    assert verified.statement == make_statement()
    assert verified.statement.predicate_type == PREDICATE_TYPE
    p = verified.predicate
    assert p.measurement.pack.perplexity_hex == "0x1.0d0d2ad7f1598p+3"
    assert p.measurement.pack.window_nll_hex == ["0x1.5800000000000p+4", "0x1.6400000000000p+4", "0x1.4200000000000p+4"]
    assert p.signed_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert verified.signer.key_fingerprint == fingerprint(load_public_key(V1 / f"{name}.pub"))


def test_golden_statement_bytes_are_what_this_version_writes() -> None:
    """Canonical serialisation must not drift: the same statement gives the same bytes."""
    assert make_statement().to_payload() == (V1 / "statement.json").read_bytes()


@pytest.mark.parametrize("name", ["p256", "ed25519"])
def test_golden_bundles_refuse_one_changed_payload_byte(name: str) -> None:
    data = json.loads((V1 / f"{name}.sigstore.json").read_bytes())
    payload = bytearray(base64.b64decode(data["dsseEnvelope"]["payload"]))
    payload[len(payload) // 2] ^= 0x01
    data["dsseEnvelope"]["payload"] = base64.b64encode(bytes(payload)).decode()
    with pytest.raises(SignatureError):
        verify_bundle(json.dumps(data).encode(), KeyAnchor(V1 / f"{name}.pub"), at=AT)


def test_golden_bundle_with_the_other_golden_key() -> None:
    with pytest.raises(KeyMismatchError):
        verify_bundle(V1 / "p256.sigstore.json", KeyAnchor(V1 / "ed25519.pub"), at=AT)


def test_golden_keys_load() -> None:
    for name in ("p256", "ed25519"):
        key = load_private_key(V1 / f"{name}.key", None)
        assert fingerprint(key.public_key()) == fingerprint(load_public_key(V1 / f"{name}.pub"))
    key = load_private_key(V1 / "p256-encrypted.key", b"golden-test-passphrase")
    assert fingerprint(key.public_key()) == fingerprint(load_public_key(V1 / "p256-encrypted.pub"))
    with pytest.raises(KeyFileError):
        load_private_key(V1 / "p256-encrypted.key", b"not it")


def test_golden_bundles_are_attestation_errors_when_truncated() -> None:
    raw = (V1 / "p256.sigstore.json").read_bytes()
    for cut in (1, len(raw) // 3, len(raw) - 3):
        with pytest.raises(AttestationError):
            verify_bundle(raw[:cut], KeyAnchor(V1 / "p256.pub"), at=AT)
