"""Keyless (Sigstore) verification, offline, from recorded or locally built material. No network."""

from __future__ import annotations

import base64
import json
import socket
from datetime import timedelta
from pathlib import Path

import pytest
from support.statements import SIGNED_AT, make_statement
from support.fake_sigstore import FakeSigstore

from uc_attest._internal.attest.trust import trust_anchor
from uc_attest._internal.attest import KeylessAnchor, KeyAnchor, BundleFormatError, IdentityError, SignatureError, StatementError, verify_bundle
from uc_attest._internal.attest.keyless import verify_keyless_logged
from uc_attest._internal.errors import UnreadableInputError, UsageError

GOLDEN = Path(__file__).parent.parent / "golden" / "attest"
THIRD_PARTY = GOLDEN / "third_party"
STAGING_IDENTITY = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
IDENTITY = "vendor@example.com"
ISSUER = "https://accounts.example.com"
AT = SIGNED_AT + timedelta(days=1)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test here runs with outgoing connections made impossible."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted during offline verification")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def fake() -> FakeSigstore:
    return FakeSigstore()


@pytest.fixture()
def root_file(fake: FakeSigstore, tmp_path: Path) -> Path:
    path = tmp_path / "trusted_root.json"
    path.write_text(json.dumps(fake.trusted_root()))
    return path


def _verify(bundle: bytes, root: Path, identity: str = IDENTITY, issuer: str = ISSUER):  # type: ignore[no-untyped-def]
    return verify_bundle(bundle, KeylessAnchor(root, identity, issuer), at=AT)


def test_keyless_bundle_verifies_offline(fake: FakeSigstore, root_file: Path) -> None:
    statement = make_statement()
    bundle = fake.sign(statement.to_payload(), IDENTITY, ISSUER)
    verified = _verify(bundle, root_file)
    assert verified.statement == statement
    assert verified.signer.mode == "keyless" and verified.signer.identity == IDENTITY and verified.signer.issuer == ISSUER


def test_uri_identity(fake: FakeSigstore, root_file: Path) -> None:
    workflow = "https://github.com/vendor/models/.github/workflows/release.yml@refs/tags/v1"
    bundle = fake.sign(make_statement().to_payload(), workflow, GITHUB_ISSUER)
    verified = _verify(bundle, root_file, workflow, GITHUB_ISSUER)
    assert verified.signer.mode == "keyless" and verified.signer.identity == workflow and verified.signer.issuer == GITHUB_ISSUER
    # the identity is compared whole: another tag of the same workflow is another signer
    with pytest.raises(IdentityError):
        _verify(bundle, root_file, workflow.replace("@refs/tags/v1", "@refs/tags/v2"), GITHUB_ISSUER)


@pytest.mark.parametrize(("identity", "issuer"), [("mallory@example.com", ISSUER), (IDENTITY, "https://evil.example.com")])
def test_wrong_identity_or_issuer(fake: FakeSigstore, root_file: Path, identity: str, issuer: str) -> None:
    bundle = fake.sign(make_statement().to_payload(), IDENTITY, ISSUER)
    with pytest.raises(IdentityError):
        _verify(bundle, root_file, identity, issuer)


def test_other_trusted_root_is_refused(fake: FakeSigstore, tmp_path: Path) -> None:
    bundle = fake.sign(make_statement().to_payload(), IDENTITY, ISSUER)
    other = tmp_path / "other_root.json"
    other.write_text(json.dumps(FakeSigstore().trusted_root()))
    with pytest.raises(IdentityError):
        _verify(bundle, other)


def test_payload_flip_is_refused(fake: FakeSigstore, root_file: Path) -> None:
    data = json.loads(fake.sign(make_statement().to_payload(), IDENTITY, ISSUER))
    payload = bytearray(base64.b64decode(data["dsseEnvelope"]["payload"]))
    payload[50] ^= 1
    data["dsseEnvelope"]["payload"] = base64.b64encode(bytes(payload)).decode()
    with pytest.raises(SignatureError):
        _verify(json.dumps(data).encode(), root_file)


def test_signature_flip_is_refused(fake: FakeSigstore, root_file: Path) -> None:
    data = json.loads(fake.sign(make_statement().to_payload(), IDENTITY, ISSUER))
    sig = bytearray(base64.b64decode(data["dsseEnvelope"]["signatures"][0]["sig"]))
    sig[20] ^= 1
    data["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    with pytest.raises(SignatureError):  # the log entry records the signature too
        _verify(json.dumps(data).encode(), root_file)


@pytest.mark.parametrize("field", ["signedEntryTimestamp", "checkpoint", "integratedTime", "canonicalizedBody"])
def test_log_entry_tampering_is_refused(fake: FakeSigstore, root_file: Path, field: str) -> None:
    data = json.loads(fake.sign(make_statement().to_payload(), IDENTITY, ISSUER))
    entry = data["verificationMaterial"]["tlogEntries"][0]
    if field == "signedEntryTimestamp":
        sig = bytearray(base64.b64decode(entry["inclusionPromise"]["signedEntryTimestamp"]))
        sig[10] ^= 1
        entry["inclusionPromise"]["signedEntryTimestamp"] = base64.b64encode(bytes(sig)).decode()
    elif field == "checkpoint":
        entry["inclusionProof"]["checkpoint"]["envelope"] = entry["inclusionProof"]["checkpoint"]["envelope"].replace("\n1\n", "\n2\n", 1)
    elif field == "integratedTime":
        entry["integratedTime"] = str(int(entry["integratedTime"]) + 1)
    else:
        body = json.loads(base64.b64decode(entry["canonicalizedBody"]))
        body["spec"]["payloadHash"]["value"] = "0" * 64
        entry["canonicalizedBody"] = base64.b64encode(json.dumps(body).encode()).decode()
    with pytest.raises(IdentityError):
        _verify(json.dumps(data).encode(), root_file)


def test_signing_outside_certificate_validity_is_refused(fake: FakeSigstore, root_file: Path) -> None:
    """A log time outside the short-lived certificate's validity (a key used after expiry) fails."""
    data = json.loads(fake.sign(make_statement().to_payload(), IDENTITY, ISSUER))
    cert_time = fake.start + timedelta(days=1)
    late = fake.sign(make_statement().to_payload(), IDENTITY, ISSUER, when=cert_time + timedelta(hours=1))
    late_data = json.loads(late)
    # keep the first certificate, but the log entry (and its body) of a signature made an hour later
    late_data["verificationMaterial"]["certificate"] = data["verificationMaterial"]["certificate"]
    with pytest.raises(IdentityError):
        _verify(json.dumps(late_data).encode(), root_file)


def test_missing_material_and_bad_roots(fake: FakeSigstore, root_file: Path, tmp_path: Path) -> None:
    bundle = fake.sign(make_statement().to_payload(), IDENTITY, ISSUER)
    with pytest.raises(UsageError):
        trust_anchor(trusted_root=root_file, identity=IDENTITY)
    with pytest.raises(UsageError):
        verify_bundle(bundle, KeyAnchor(b"x"), at=AT)
    with pytest.raises(UnreadableInputError):
        _verify(bundle, tmp_path / "absent.json")
    junk = tmp_path / "junk.json"
    junk.write_text("{}")
    with pytest.raises(UnreadableInputError):
        _verify(bundle, junk)


def test_broken_keyless_bundle_is_a_format_error(fake: FakeSigstore, root_file: Path) -> None:
    data = json.loads(fake.sign(make_statement().to_payload(), IDENTITY, ISSUER))
    data["verificationMaterial"]["certificate"]["rawBytes"] = "AAAA"
    with pytest.raises(BundleFormatError):
        _verify(json.dumps(data).encode(), root_file)
    data = json.loads(fake.sign(make_statement().to_payload(), IDENTITY, ISSUER))
    data["verificationMaterial"]["tlogEntries"] = []
    with pytest.raises(BundleFormatError):
        _verify(json.dumps(data).encode(), root_file)


def test_recorded_sigstore_staging_bundle_verifies_offline() -> None:
    """Real Sigstore staging material (Fulcio cert, Rekor v2 entry, TSA timestamp), verified offline."""
    raw = (THIRD_PARTY / "sigstore-python-staging-dsse.sigstore.json").read_bytes()
    root = THIRD_PARTY / "sigstore-staging-trusted_root.json"
    payload, _logged_at = verify_keyless_logged(raw, trusted_root=root, identity=STAGING_IDENTITY, issuer=GITHUB_ISSUER)
    assert json.loads(payload)["predicateType"] == "https://slsa.dev/provenance/v1"
    with pytest.raises(StatementError, match="predicateType"):  # verified, but not our predicate
        verify_bundle(raw, KeylessAnchor(root, STAGING_IDENTITY, GITHUB_ISSUER))
    with pytest.raises(IdentityError):
        verify_keyless_logged(raw, trusted_root=root, identity="someone@example.com", issuer=GITHUB_ISSUER)
    tampered = json.loads(raw)
    body = bytearray(base64.b64decode(tampered["dsseEnvelope"]["payload"]))
    body[-3] ^= 1
    tampered["dsseEnvelope"]["payload"] = base64.b64encode(bytes(body)).decode()
    with pytest.raises(SignatureError):
        verify_keyless_logged(json.dumps(tampered).encode(), trusted_root=root, identity=STAGING_IDENTITY, issuer=GITHUB_ISSUER)


def test_golden_keyless_bundle_still_verifies() -> None:
    """A keyless bundle this version accepted (built with the local fake CA) must stay verifiable."""
    raw = (GOLDEN / "v1" / "keyless-fake-ca.sigstore.json").read_bytes()
    root = GOLDEN / "v1" / "keyless-fake-ca.trusted_root.json"
    verified = verify_bundle(raw, KeylessAnchor(root, IDENTITY, ISSUER), at=AT)
    assert verified.statement == make_statement()


class _FakeSigstoreServices:
    """Stands in for Sigstore's online services inside ``sign_keyless`` (no network, same ``sigstore`` glue)."""

    def __init__(self, fake: FakeSigstore) -> None:
        self.fake = fake
        self.tokens: list[str] = []
        self.statements: list[bytes] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import contextlib

        import sigstore.models
        import sigstore.oidc
        import sigstore.sign
        from sigstore.models import Bundle

        services = self

        class Token:
            def __init__(self, raw: str) -> None:
                services.tokens.append(raw)

        class Signer:
            def sign_dsse(self, statement):  # type: ignore[no-untyped-def]
                services.statements.append(statement._contents)
                return Bundle.from_json(services.fake.sign(statement._contents, IDENTITY, ISSUER, when=SIGNED_AT))

        class Context:
            @contextlib.contextmanager
            def signer(self, token, cache=True):  # type: ignore[no-untyped-def]
                yield Signer()

        monkeypatch.setattr(sigstore.models.ClientTrustConfig, "production", classmethod(lambda cls, offline=False: object()))
        monkeypatch.setattr(sigstore.sign.SigningContext, "from_trust_config", classmethod(lambda cls, config: Context()))
        monkeypatch.setattr(sigstore.oidc, "IdentityToken", Token)


def test_sign_keyless_glue_with_stand_in_services(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``sign_keyless`` hands our exact payload to sigstore's signer and returns its bundle JSON."""
    from uc_attest._internal.attest.keyless import sign_keyless

    fake = FakeSigstore(start=SIGNED_AT - timedelta(days=1))
    services = _FakeSigstoreServices(fake)
    services.install(monkeypatch)
    monkeypatch.setenv("SIGSTORE_ID_TOKEN", "header.payload.signature")
    payload = make_statement().to_payload()
    bundle = sign_keyless(payload)
    assert services.tokens == ["header.payload.signature"] and services.statements == [payload]
    root = tmp_path / "root.json"
    root.write_text(json.dumps(fake.trusted_root()))
    assert _verify(bundle, root).payload == payload


@pytest.mark.slow
def test_attest_sign_sigstore_end_to_end_with_stand_in_services(  # type: ignore[no-untyped-def]
    attest_cli, tiny_pack: Path, eval_text: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``attest sign --sigstore`` writes a keyless bundle that verifies offline with the trusted root."""
    fake = FakeSigstore(start=SIGNED_AT - timedelta(days=1))
    _FakeSigstoreServices(fake).install(monkeypatch)
    r = attest_cli("sign", tiny_pack, "--sigstore", "--eval-text", eval_text, "--seq-len", "16", "--max-windows", "1", "--quiet",
                   env={"SIGSTORE_ID_TOKEN": "t.o.k"})  # fmt: skip
    assert r.rc == 0, r.err
    assert "signed by sigstore keyless" in r.out
    root = tmp_path / "root.json"
    root.write_text(json.dumps(fake.trusted_root()))
    verified = verify_bundle(tiny_pack.parent / "pack.sigstore.json", KeylessAnchor(root, IDENTITY, ISSUER))
    assert verified.signer.mode == "keyless"
    assert verified.predicate.measurement.windows == 1
