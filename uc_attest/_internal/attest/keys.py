"""Signing keys: generation, PEM files, fingerprints, and loading with typed errors.

Two algorithms, both what Sigstore clients verify without special options:

* ``p256`` (default): ECDSA on NIST P-256 with SHA-256, DER-encoded signatures.
  It is the Sigstore ecosystem's common denominator (Fulcio issues it, every
  client verifies it).
* ``ed25519``: pure Ed25519 (the message itself is signed, no pre-hash).

Private keys are PKCS#8 PEM, encrypted with the best scheme ``cryptography``
offers when a passphrase is given; public keys are SubjectPublicKeyInfo (SPKI)
PEM. The fingerprint of a key is the lowercase hex SHA-256 of the DER encoding
of its SPKI; it is what ``publicKey.hint`` carries in a bundle, so a verifier
can tell at once which key a bundle claims and refuse a different one.

The passphrase never travels on a command line (visible in ``ps`` and shell
history): it comes from ``UC_ATTEST_KEY_PASSPHRASE`` or an interactive prompt.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from ..errors import UnreadableInputError, UsageError
from ..safe_io import read_input_file
from .errors import KeyFileError

PASSPHRASE_ENV = "UC_ATTEST_KEY_PASSPHRASE"
"""Environment variable that carries the private key's passphrase."""

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

MAX_KEY_FILE_BYTES = 64 * 1024


class Algorithm(StrEnum):
    """Signature algorithms this project signs and verifies with."""

    P256 = "p256"
    ED25519 = "ed25519"

    @classmethod
    def parse(cls, name: str) -> Algorithm:
        try:
            return cls(name.lower())
        except ValueError:
            known = ", ".join(a.value for a in cls)
            raise KeyFileError(f"unknown key algorithm {name!r} (known: {known})") from None


def generate_private_key(algorithm: Algorithm = Algorithm.P256) -> PrivateKey:
    """Create a fresh private key of ``algorithm``."""
    if algorithm is Algorithm.P256:
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def algorithm_of(key: PrivateKey | PublicKey) -> Algorithm:
    """The :class:`Algorithm` of a key; any other kind of key is refused."""
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        if not isinstance(key.curve, ec.SECP256R1):
            raise KeyFileError(f"unsupported elliptic curve {key.curve.name} (only P-256 is supported)")
        return Algorithm.P256
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return Algorithm.ED25519
    raise KeyFileError(f"unsupported key type {type(key).__name__} (use p256 or ed25519)")


def spki_der(public_key: PublicKey) -> bytes:
    """The DER SubjectPublicKeyInfo of ``public_key`` (what the fingerprint hashes)."""
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint(public_key: PublicKey) -> str:
    """Lowercase hex SHA-256 of the key's SPKI DER: the key's identity everywhere in this project."""
    return hashlib.sha256(spki_der(public_key)).hexdigest()


def private_key_pem(key: PrivateKey, passphrase: bytes | None) -> bytes:
    """PKCS#8 PEM; encrypted when ``passphrase`` is a non-empty byte string."""
    encryption: serialization.KeySerializationEncryption
    if passphrase:
        encryption = serialization.BestAvailableEncryption(passphrase)
    else:
        encryption = serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def public_key_pem(public_key: PublicKey) -> bytes:
    """SPKI PEM of ``public_key``."""
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_paths(name: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``NAME.key`` and ``NAME.pub`` for a key name (a ``.key``/``.pub`` suffix given by habit is dropped)."""
    base = Path(name)
    if base.suffix in (".key", ".pub"):
        base = base.with_suffix("")
    return base.with_name(base.name + ".key"), base.with_name(base.name + ".pub")


def write_keypair(
    name: str | os.PathLike[str],
    algorithm: Algorithm = Algorithm.P256,
    passphrase: bytes | None = None,
    *,
    overwrite: bool = False,
) -> tuple[Path, Path, str]:
    """Generate a key pair and write ``NAME.key`` (mode 0600) and ``NAME.pub``.

    Returns both paths and the fingerprint. Existing key files are never
    replaced unless ``overwrite``: losing a signing key by a repeated command
    is not recoverable. Both files appear or neither does.
    """
    from ..outputs import Output, ensure_outputs_writable, write_all

    key_path, pub_path = key_paths(name)
    ensure_outputs_writable([key_path, pub_path], overwrite=overwrite)
    key = generate_private_key(algorithm)
    # both or neither; with --force a failed write restores the old pair instead of losing the old key
    write_all([Output(key_path, private_key_pem(key, passphrase), 0o600), Output(pub_path, public_key_pem(key.public_key()), 0o644)])
    return key_path, pub_path, fingerprint(key.public_key())


def _read_key_file(path: str | os.PathLike[str]) -> bytes:
    p = Path(path)
    try:
        return read_input_file(p, "key file", MAX_KEY_FILE_BYTES)
    except UsageError as exc:  # a missing key file: unreadable input, as before
        raise UnreadableInputError(str(exc)) from None


def _looks_public(data: bytes) -> bool:
    return b"-----BEGIN PUBLIC KEY-----" in data or b"-----BEGIN CERTIFICATE-----" in data


def is_encrypted_pem(data: bytes) -> bool:
    """True when ``data`` is an encrypted PKCS#8 (or legacy encrypted) PEM private key."""
    return b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data or b"Proc-Type: 4,ENCRYPTED" in data


def load_private_key_pem(data: bytes, passphrase: bytes | None, source: str = "key") -> PrivateKey:
    """Parse a PEM private key, mapping every failure to one clear :class:`KeyFileError`."""
    if _looks_public(data):
        raise KeyFileError(f"{source} is a public key; signing needs the private key (NAME.key)")
    encrypted = is_encrypted_pem(data)
    if encrypted and not passphrase:
        raise KeyFileError(f"{source} is encrypted: set {PASSPHRASE_ENV} or run interactively to be prompted")
    try:
        key = serialization.load_pem_private_key(data, password=passphrase if encrypted else None)
    except ValueError as exc:
        if encrypted:
            raise KeyFileError(f"{source}: wrong passphrase (or a corrupted key file)") from None
        raise KeyFileError(f"{source} is not a PEM private key ({' '.join(str(exc).split())[:120]})") from None
    except (TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"{source}: cannot load private key ({exc})") from None
    algorithm_of(key)  # type: ignore[arg-type]  # refuses RSA, other curves, ... (at run time)
    return key  # type: ignore[return-value]


def load_private_key(path: str | os.PathLike[str], passphrase: bytes | None) -> PrivateKey:
    """Load ``NAME.key``; ``passphrase`` is used only when the file is encrypted."""
    return load_private_key_pem(_read_key_file(path), passphrase, source=str(path))


def load_public_key_pem(data: bytes, source: str = "public key") -> PublicKey:
    """Parse an SPKI PEM public key (a private key is accepted and its public half used)."""
    if b"PRIVATE KEY-----" in data:
        raise KeyFileError(f"{source} is a private key; give the public key (NAME.pub)")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"{source} is not a PEM public key ({' '.join(str(exc).split())[:120]})") from None
    algorithm_of(key)  # type: ignore[arg-type]  # refuses RSA, other curves, ... (at run time)
    return key  # type: ignore[return-value]


def load_public_key(path: str | os.PathLike[str]) -> PublicKey:
    """Load ``NAME.pub``."""
    return load_public_key_pem(_read_key_file(path), source=str(path))


def sign_bytes(key: PrivateKey, message: bytes) -> bytes:
    """Sign ``message``: ECDSA-SHA256 (DER) for P-256, pure Ed25519 otherwise."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(message, ec.ECDSA(hashes.SHA256()))
    return key.sign(message)


def verify_bytes(key: PublicKey, signature: bytes, message: bytes) -> bool:
    """True when ``signature`` is valid for ``message`` under ``key``; never raises for bad input."""
    from cryptography.exceptions import InvalidSignature

    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        else:
            key.verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def passphrase_from_env() -> bytes | None:
    """The passphrase from :data:`PASSPHRASE_ENV`, or None when the variable is unset.

    An empty value is returned as ``b""``: at keygen it explicitly asks for an
    unencrypted key.
    """
    value = os.environ.get(PASSPHRASE_ENV)
    return None if value is None else value.encode("utf-8")


def check_private_key_permissions(path: str | os.PathLike[str]) -> None:
    """Refuse (exit 2, as ssh does) a private key file that group or others can read or write.

    Such a key may already be copied by someone else, so signing with it would
    give a signature that proves little. ``--allow-open-key-file`` skips this.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # reading it reports the problem
    if mode & 0o077:
        raise UsageError(
            f"private key {path} is accessible by group or others (mode {mode & 0o777:04o})",
            hint=f"run chmod 600 {path}, or pass --allow-open-key-file to use it anyway",
        )


def load_signing_key(
    path: str | os.PathLike[str], prompt: Callable[[], bytes] | None = None, *, allow_open_permissions: bool = False
) -> PrivateKey:
    """Load the private key at ``path`` for signing.

    An encrypted key's passphrase comes from :data:`PASSPHRASE_ENV`, else from
    ``prompt`` (the CLI passes one only when a terminal is attached); an
    unencrypted key needs neither. A key file readable by group or others is
    refused unless ``allow_open_permissions``.
    """
    data = _read_key_file(path)
    if not allow_open_permissions and not _looks_public(data):
        check_private_key_permissions(path)
    passphrase: bytes | None = None
    if is_encrypted_pem(data):
        passphrase = passphrase_from_env()
        if not passphrase and prompt is not None:
            passphrase = prompt()
    return load_private_key_pem(data, passphrase, source=str(path))
