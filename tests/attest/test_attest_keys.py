"""Key generation, key files, fingerprints and every way a key file can be wrong."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from uc_attest._internal.attest.errors import KeyFileError
from uc_attest._internal.attest.keys import (
    Algorithm,
    fingerprint,
    is_encrypted_pem,
    key_paths,
    load_private_key,
    load_public_key,
    load_signing_key,
    private_key_pem,
    write_keypair,
)
from uc_attest._internal.errors import UnreadableInputError, UsageError


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_keygen_cli_writes_pair_and_prints_fingerprint(attest_cli, tmp_path: Path, algorithm: Algorithm) -> None:
    name = tmp_path / "vendor"
    r = attest_cli("keygen", "-o", name, "--algorithm", algorithm.value)
    assert r.rc == 0, r.err
    key_path, pub_path = key_paths(name)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert pub_path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    pub = load_public_key(pub_path)
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert f"fingerprint: {hashlib.sha256(der).hexdigest()}" in r.out
    assert "not encrypted" in r.err
    priv = load_private_key(key_path, None)
    assert fingerprint(priv.public_key()) == fingerprint(pub)
    expected = ec.EllipticCurvePrivateKey if algorithm is Algorithm.P256 else ed25519.Ed25519PrivateKey
    assert isinstance(priv, expected)


def test_keygen_encrypts_with_env_passphrase(attest_cli, tmp_path: Path) -> None:
    name = tmp_path / "enc"
    r = attest_cli("keygen", "-o", name, env={"UC_ATTEST_KEY_PASSPHRASE": "correct horse"})
    assert r.rc == 0, r.err
    key_path, _ = key_paths(name)
    data = key_path.read_bytes()
    assert is_encrypted_pem(data)
    assert "encrypted" in r.out and "not encrypted" not in r.err
    assert fingerprint(load_private_key(key_path, b"correct horse").public_key()) == fingerprint(load_public_key(key_paths(name)[1]))
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_private_key(key_path, b"wrong")
    with pytest.raises(KeyFileError, match="UC_ATTEST_KEY_PASSPHRASE"):
        load_private_key(key_path, None)


def test_keygen_prompts_on_a_terminal(attest_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("uc_attest._internal.cli.attest_keys.stdin_is_interactive", lambda: True)
    name = tmp_path / "prompted"
    r = attest_cli("keygen", "-o", name, input="s3cret\ns3cret\n")
    assert r.rc == 0, r.err
    key_path, pub_path = key_paths(name)
    assert is_encrypted_pem(key_path.read_bytes())
    assert fingerprint(load_private_key(key_path, b"s3cret").public_key()) == fingerprint(load_public_key(pub_path))  # the typed passphrase opens it


def test_keygen_refuses_to_overwrite(attest_cli, tmp_path: Path) -> None:
    name = tmp_path / "k"
    assert attest_cli("keygen", "-o", name).rc == 0
    before = key_paths(name)[0].read_bytes()
    r = attest_cli("keygen", "-o", name)
    assert r.rc == 2 and r.err.count("\n") == 1 and "already exists" in r.err
    assert key_paths(name)[0].read_bytes() == before
    assert attest_cli("keygen", "-o", name, "--force").rc == 0
    assert key_paths(name)[0].read_bytes() != before


def test_keygen_unknown_algorithm_is_one_line_exit_2(attest_cli, tmp_path: Path) -> None:
    r = attest_cli("keygen", "-o", tmp_path / "k", "--algorithm", "rsa")
    assert r.rc == 2
    assert r.err.count("\n") == 1 and r.err.startswith("error:")
    assert not list(tmp_path.iterdir())
    with pytest.raises(KeyFileError, match="unknown key algorithm"):
        Algorithm.parse("secp384")


def test_keygen_missing_output_dir_is_exit_2(attest_cli, tmp_path: Path) -> None:
    r = attest_cli("keygen", "-o", tmp_path / "nope" / "k")
    assert r.rc == 2 and "does not exist" in r.err


def test_public_key_where_private_needed(tmp_path: Path) -> None:
    _, pub, _ = write_keypair(tmp_path / "k")
    with pytest.raises(KeyFileError, match="public key"):
        load_signing_key(pub)


def test_private_key_where_public_needed(tmp_path: Path) -> None:
    key, _, _ = write_keypair(tmp_path / "k")
    with pytest.raises(KeyFileError, match="private key"):
        load_public_key(key)


def test_rsa_and_other_curves_are_refused(tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "rsa.key"
    path.write_bytes(rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(KeyFileError, match="unsupported key type"):
        load_private_key(path, None)
    p384 = ec.generate_private_key(ec.SECP384R1())
    path.write_bytes(private_key_pem(p384, None))  # type: ignore[arg-type]
    with pytest.raises(KeyFileError, match="P-256"):
        load_private_key(path, None)


def test_garbage_and_missing_key_files(tmp_path: Path) -> None:
    path = tmp_path / "junk.key"
    path.write_bytes(b"not a key at all")
    with pytest.raises(KeyFileError):
        load_private_key(path, None)
    with pytest.raises(UnreadableInputError):
        load_private_key(tmp_path / "absent.key", None)
    with pytest.raises(UnreadableInputError):
        load_public_key(tmp_path)
    assert issubclass(KeyFileError, UsageError)


def test_signing_key_passphrase_from_env_or_prompt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_path, _, expected = write_keypair(tmp_path / "k", passphrase=b"pw")
    monkeypatch.setenv("UC_ATTEST_KEY_PASSPHRASE", "pw")
    assert fingerprint(load_signing_key(key_path).public_key()) == expected
    monkeypatch.delenv("UC_ATTEST_KEY_PASSPHRASE")
    assert fingerprint(load_signing_key(key_path, prompt=lambda: b"pw").public_key()) == expected
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_signing_key(key_path, prompt=lambda: b"nope")
    # an unencrypted key ignores a passphrase in the environment
    plain, _, plain_fingerprint = write_keypair(tmp_path / "plain")
    monkeypatch.setenv("UC_ATTEST_KEY_PASSPHRASE", "whatever")
    assert fingerprint(load_signing_key(plain).public_key()) == plain_fingerprint


def test_key_paths_accept_suffix_by_habit(tmp_path: Path) -> None:
    assert key_paths(tmp_path / "v.key") == (tmp_path / "v.key", tmp_path / "v.pub")
    assert key_paths("a/b") == (Path("a/b.key"), Path("a/b.pub"))


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_private_key_readable_by_others_is_refused_like_ssh(tmp_path: Path, mode: int) -> None:
    key_path, _, _ = write_keypair(tmp_path / "k")
    key_path.chmod(mode)
    with pytest.raises(UsageError, match="accessible by group or others") as info:
        load_signing_key(key_path)
    assert info.value.exit_code == 2
    assert load_signing_key(key_path, allow_open_permissions=True) is not None
    key_path.chmod(0o600)
    assert load_signing_key(key_path) is not None


@pytest.mark.slow
def test_attest_sign_refuses_an_open_key_file(attest_cli, tiny_pack: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key_path, _, _ = write_keypair(tmp_path / "vendor")
    key_path.chmod(0o644)
    result = attest_cli("sign", tiny_pack, "--key", key_path, "--quiet")
    assert result.rc == 2 and "--allow-open-key-file" in result.err


def test_keygen_organization_writes_a_self_signed_certificate_for_the_key(attest_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from uc_attest._internal.attest.certificates import load_certificate
    from uc_attest._internal.attest.keys import fingerprint, load_public_key

    result = attest_cli("keygen", "-o", tmp_path / "customer", "--organization", "Example Hospital", env={"UC_ATTEST_KEY_PASSPHRASE": ""})
    assert result.rc == 0, result.err
    cert = load_certificate(tmp_path / "customer.crt")
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Example Hospital"
    assert cert.issuer == cert.subject
    assert fingerprint(cert.public_key()) == fingerprint(load_public_key(tmp_path / "customer.pub"))  # type: ignore[arg-type]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
