"""DSSE, the key-mode bundle and verify_bundle: happy paths and mutate-then-verify."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from support.statements import SIGNED_AT, make_predicate, make_statement
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uc_attest._internal.attest import (
    BUNDLE_MEDIA_TYPE,
    IN_TOTO_PAYLOAD_TYPE,
    BundleFormatError,
    ExpiredError,
    KeyAnchor,
    KeylessAnchor,
    KeyMismatchError,
    SignatureError,
    StatementError,
    verify_bundle,
)
from uc_attest._internal.attest.dsse import Envelope, pae, sign_envelope, verify_envelope
from uc_attest._internal.attest.errors import AttestationError
from uc_attest._internal.attest.keys import Algorithm, fingerprint, generate_private_key, public_key_pem
from uc_attest._internal.attest.signing import sign_payload, sign_statement
from uc_attest._internal.attest.statement import canonical_json
from uc_attest._internal.errors import UsageError, VerificationError

AT = SIGNED_AT + timedelta(days=1)


def _mutate(bundle: bytes, fn) -> bytes:  # type: ignore[no-untyped-def]
    data = json.loads(bundle)
    fn(data)
    return json.dumps(data).encode()


def _flip_payload_byte(data: dict, index: int = 40) -> None:  # type: ignore[type-arg]
    payload = bytearray(base64.b64decode(data["dsseEnvelope"]["payload"]))
    payload[index] ^= 0x01
    data["dsseEnvelope"]["payload"] = base64.b64encode(bytes(payload)).decode()


def _flip_sig_byte(data: dict) -> None:  # type: ignore[type-arg]
    sig = bytearray(base64.b64decode(data["dsseEnvelope"]["signatures"][0]["sig"]))
    sig[len(sig) // 2] ^= 0x01
    data["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()


def test_pae_matches_the_dsse_spec_example() -> None:
    assert pae("http://example.com/HelloWorld", b"hello world") == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    assert pae("t", b"") == b"DSSEv1 1 t 0 "
    assert pae("\u00e9", b"x") == "DSSEv1 2 \u00e9 1 x".encode()  # lengths are in bytes


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_envelope_round_trip_and_tamper(algorithm: Algorithm) -> None:
    key = generate_private_key(algorithm)
    env = sign_envelope(b'{"a":1}', key)
    assert verify_envelope(env, key.public_key()) == b'{"a":1}'
    bad = env.model_copy(update={"payload": base64.b64encode(b'{"a":2}').decode()})
    with pytest.raises(SignatureError):
        verify_envelope(bad, key.public_key())
    other = generate_private_key(algorithm)
    with pytest.raises(SignatureError):
        verify_envelope(env, other.public_key())
    with pytest.raises(BundleFormatError, match="payloadType"):
        verify_envelope(env.model_copy(update={"payload_type": "text/plain"}), key.public_key())


def test_envelope_needs_exactly_one_signature() -> None:
    key = generate_private_key()
    env = sign_envelope(b"x", key)
    two = env.model_copy(update={"signatures": env.signatures * 2})
    with pytest.raises(BundleFormatError, match="exactly one"):
        verify_envelope(two, key.public_key())
    with pytest.raises(BundleFormatError, match="exactly one"):
        verify_envelope(env.model_copy(update={"signatures": []}), key.public_key())


def test_non_canonical_base64_is_refused() -> None:
    key = generate_private_key()
    env = sign_envelope(b"ab", key)  # "YWI=": the last character carries two unused bits
    assert env.payload == "YWI="
    assert base64.b64decode("YWJ=") == b"ab"
    with pytest.raises(BundleFormatError, match="canonical"):
        verify_envelope(env.model_copy(update={"payload": "YWJ="}), key.public_key())
    with pytest.raises(BundleFormatError, match="base64"):
        verify_envelope(env.model_copy(update={"payload": "YW I="}), key.public_key())


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_bundle_shape(algorithm: Algorithm) -> None:
    key = generate_private_key(algorithm)
    bundle = json.loads(sign_statement(make_statement(), key))
    assert bundle["mediaType"] == BUNDLE_MEDIA_TYPE
    assert bundle["verificationMaterial"] == {"publicKey": {"hint": fingerprint(key.public_key())}, "tlogEntries": []}
    env = bundle["dsseEnvelope"]
    assert env["payloadType"] == IN_TOTO_PAYLOAD_TYPE
    assert len(env["signatures"]) == 1 and set(env["signatures"][0]) == {"sig"}
    assert list(bundle) == ["mediaType", "verificationMaterial", "dsseEnvelope"]


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_verify_bundle_returns_the_statement(algorithm: Algorithm, tmp_path) -> None:  # type: ignore[no-untyped-def]
    key = generate_private_key(algorithm)
    statement = make_statement()
    bundle = sign_statement(statement, key)
    pub = tmp_path / "k.pub"
    pub.write_bytes(public_key_pem(key.public_key()))
    path = tmp_path / "b.json"
    path.write_bytes(bundle)
    for public_key in (key.public_key(), pub, str(pub), pub.read_bytes()):
        verified = verify_bundle(path, KeyAnchor(public_key), at=AT)
        assert verified.statement == statement
        assert verified.payload == statement.to_payload()
        assert verified.predicate == make_predicate()
        assert verified.signer.mode == "key" and verified.signer.key_fingerprint == fingerprint(key.public_key())


def test_payload_byte_flip_is_a_signature_error(p256_key) -> None:  # type: ignore[no-untyped-def]
    bundle = sign_statement(make_statement(), p256_key)
    with pytest.raises(SignatureError):
        verify_bundle(_mutate(bundle, _flip_payload_byte), KeyAnchor(p256_key.public_key()), at=AT)


def test_signature_byte_flip_is_a_signature_error(ed25519_key, p256_key) -> None:  # type: ignore[no-untyped-def]
    for key in (ed25519_key, p256_key):
        bundle = sign_statement(make_statement(), key)
        with pytest.raises(SignatureError):
            verify_bundle(_mutate(bundle, _flip_sig_byte), KeyAnchor(key.public_key()), at=AT)


def test_other_key_is_a_key_mismatch(p256_key) -> None:  # type: ignore[no-untyped-def]
    bundle = sign_statement(make_statement(), p256_key)
    other = generate_private_key()
    with pytest.raises(KeyMismatchError):
        verify_bundle(bundle, KeyAnchor(other.public_key()), at=AT)

    # A forged hint naming the other key does not help: the signature is checked with that key.
    def forge(d: dict) -> None:  # type: ignore[type-arg]
        d["verificationMaterial"]["publicKey"]["hint"] = fingerprint(other.public_key())

    with pytest.raises(SignatureError):
        verify_bundle(_mutate(bundle, forge), KeyAnchor(other.public_key()), at=AT)


def test_signature_is_checked_before_the_payload_is_parsed(p256_key) -> None:  # type: ignore[no-untyped-def]
    """Unsigned garbage must be reported as a bad signature, never reach the JSON parser."""
    bundle = sign_payload(b"not json at all", p256_key)
    with pytest.raises(StatementError):
        verify_bundle(bundle, KeyAnchor(p256_key.public_key()), at=AT)  # signed garbage: parsed, refused

    def swap(d: dict) -> None:  # type: ignore[type-arg]
        d["dsseEnvelope"]["payload"] = base64.b64encode(b'{"_type": 1, "_type": 2}').decode()

    with pytest.raises(SignatureError):
        verify_bundle(_mutate(bundle, swap), KeyAnchor(p256_key.public_key()), at=AT)


@pytest.mark.parametrize(
    ("mutation", "error"),
    [
        (lambda d: d.update(mediaType="application/vnd.dev.sigstore.bundle.v0.2+json"), BundleFormatError),
        (lambda d: d["verificationMaterial"].pop("tlogEntries"), BundleFormatError),
        (lambda d: d["verificationMaterial"].update(tlogEntries=[{"logIndex": "1"}]), BundleFormatError),
        (lambda d: d["verificationMaterial"].update(extra=1), BundleFormatError),
        (lambda d: d["verificationMaterial"].update(certificate={"rawBytes": "AA=="}), BundleFormatError),
        (lambda d: d["verificationMaterial"].pop("publicKey"), BundleFormatError),
        (lambda d: d.pop("dsseEnvelope"), BundleFormatError),
        (lambda d: d["dsseEnvelope"].update(payloadType="application/json"), BundleFormatError),
        (lambda d: d["dsseEnvelope"]["signatures"].append(d["dsseEnvelope"]["signatures"][0]), BundleFormatError),
        (lambda d: d["dsseEnvelope"]["signatures"][0].update(sig=""), BundleFormatError),
        (lambda d: d["dsseEnvelope"].update(payload=d["dsseEnvelope"]["payload"][:-4]), SignatureError),
    ],
)
def test_bundle_mutations_are_typed_errors(p256_key, mutation, error) -> None:  # type: ignore[no-untyped-def]
    bundle = sign_statement(make_statement(), p256_key)
    with pytest.raises(error):
        verify_bundle(_mutate(bundle, mutation), KeyAnchor(p256_key.public_key()), at=AT)


def test_unparseable_bundles(p256_key) -> None:  # type: ignore[no-untyped-def]
    bundle = sign_statement(make_statement(), p256_key)
    dup = bundle.replace(b'"mediaType"', b'"mediaType": "x", "mediaType"', 1)
    for raw in (b"", b"[]", b"\xff\xfe", bundle[:-10], dup):
        with pytest.raises(BundleFormatError):
            verify_bundle(raw, KeyAnchor(p256_key.public_key()), at=AT)


def test_expiry(p256_key) -> None:  # type: ignore[no-untyped-def]
    bundle = sign_statement(make_statement(valid_days=10), p256_key)
    verify_bundle(bundle, KeyAnchor(p256_key.public_key()), at=SIGNED_AT + timedelta(days=9))
    with pytest.raises(ExpiredError):
        verify_bundle(bundle, KeyAnchor(p256_key.public_key()), at=SIGNED_AT + timedelta(days=11))
    verify_bundle(bundle, KeyAnchor(p256_key.public_key()), at=SIGNED_AT + timedelta(days=11), allow_expired=True)
    with pytest.raises(ExpiredError):  # default: now, long after 2025
        verify_bundle(bundle, KeyAnchor(p256_key.public_key()))


def test_validly_signed_but_wrong_statements(p256_key) -> None:  # type: ignore[no-untyped-def]
    statement = make_statement().model_dump(by_alias=True, mode="json")
    cases = []
    other_type = json.loads(json.dumps(statement))
    other_type["predicateType"] = "https://uc-attest.dev/acceptance-test/v2"
    cases.append(other_type)
    wrong_hex = json.loads(json.dumps(statement))
    wrong_hex["predicate"]["measurement"]["pack"]["perplexity"] += 1e-9
    cases.append(wrong_hex)
    extra = json.loads(json.dumps(statement))
    extra["predicate"]["surprise"] = True
    cases.append(extra)
    old_statement = json.loads(json.dumps(statement))
    old_statement["_type"] = "https://in-toto.io/Statement/v0.1"
    cases.append(old_statement)
    no_subjects = json.loads(json.dumps(statement))
    no_subjects["subject"] = []
    cases.append(no_subjects)
    for case in cases:
        bundle = sign_payload(canonical_json(case), p256_key)
        with pytest.raises(StatementError):
            verify_bundle(bundle, KeyAnchor(p256_key.public_key()), at=AT)


def test_wrong_mode_material_is_a_usage_error(p256_key) -> None:  # type: ignore[no-untyped-def]
    bundle = sign_statement(make_statement(), p256_key)
    with pytest.raises(UsageError):
        verify_bundle(bundle, KeylessAnchor("x.json", "a", "b"), at=AT)


def test_error_hierarchy_exit_codes() -> None:
    for cls in (BundleFormatError, SignatureError, KeyMismatchError, StatementError, ExpiredError):
        assert issubclass(cls, AttestationError) and issubclass(cls, VerificationError)
        assert cls("x").exit_code == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_single_bit_flip_is_refused(p256_key, position: int, bit: int) -> None:  # type: ignore[no-untyped-def]
    bundle = _SIGNED.setdefault("b", sign_statement(make_statement(), p256_key))
    key = _SIGNED.setdefault("k", p256_key)
    mutated = bytearray(bundle)
    mutated[position % len(mutated)] ^= 1 << bit
    with pytest.raises(AttestationError):
        verify_bundle(bytes(mutated), KeyAnchor(key.public_key()), at=AT)


_SIGNED: dict[str, object] = {}


def test_envelope_model_round_trips() -> None:
    key = generate_private_key()
    env = sign_envelope(b"abc", key)
    again = Envelope.model_validate_json(env.model_dump_json(by_alias=True))
    assert again == env


def test_naive_at_is_accepted_and_still_checked_against_expiry(p256_key) -> None:  # type: ignore[no-untyped-def]
    """A naive ``at`` is a local time: it verifies inside the validity window and is refused after it, as an aware one."""
    statement = make_statement(valid_days=1)
    bundle = sign_statement(statement, p256_key)
    naive = SIGNED_AT.replace(tzinfo=None)
    for at in (naive + timedelta(hours=12), SIGNED_AT + timedelta(hours=12)):  # within a day whatever the local offset
        verified = verify_bundle(bundle, KeyAnchor(p256_key.public_key()), at=at)
        assert verified.statement == statement and verified.signer.key_fingerprint == fingerprint(p256_key.public_key())
    for at in (naive + timedelta(days=3), SIGNED_AT + timedelta(days=3)):
        with pytest.raises(ExpiredError):
            verify_bundle(bundle, KeyAnchor(p256_key.public_key()), at=at)
