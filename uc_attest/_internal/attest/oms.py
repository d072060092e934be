"""OpenSSF model signing (OMS) of the pack directory, beside the acceptance attestation.

``attest sign --oms`` also signs the pack with the OpenSSF ``model-signing``
library, with the same private key, so that tools of that ecosystem
(``model_signing verify key``, registries that sign with it) accept the pack.
The OMS signature is a Sigstore bundle whose DSSE payload is an in-toto
statement with the ``https://model_signing/signature/v1.0`` predicate: the
SHA-256 of every file of the directory. It proves the files and nothing
more; the acceptance attestation proves the files, every rebuilt tensor and
the measurement (docs/ATTESTATION.md).

The library is used through its public API: it reads the key from a PEM
file, so the key already in memory is handed to it as a PEM encrypted with a
random one-time passphrase in a private temporary file, removed at once.
After signing, the file digests the OMS statement lists are compared with the
attested pack files: a pack changed while it was being signed is refused. The
signature is made in memory by ``sign_pack`` and written with the bundle and
the token file, all or none.

``model-signing`` is an optional dependency (extra ``oms``); without it
``--oms`` is a usage error and the check's advisory row says it was not run.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from ..errors import UnreadableInputError, UsageError, VerificationError
from ..pack.strict_json import loads_strict
from ..safe_io import read_regular_file, special_files_under
from .keys import Algorithm, PrivateKey, algorithm_of, private_key_pem
from ..digests import diff_files
from .bundle import read_unverified_payload
from .errors import AttestationError

OMS_PREDICATE_TYPE = "https://model_signing/signature/v1.0"
MAX_SIGNATURE_BYTES = 64 << 20


def _library() -> tuple[Any, Any, Any]:
    """The ``model_signing`` modules, or a usage error that says how to install them."""
    try:
        with warnings.catch_warnings():  # pyOpenSSL, which model-signing imports, warns about DSA when imported
            warnings.simplefilter("ignore")
            from model_signing import hashing, signing, verifying
    except ImportError as exc:  # also OpenSSL missing: model-signing imports pyopenssl
        raise UsageError(f"OpenSSF model signing needs the packages model-signing and pyopenssl (pip install 'uc_attest[oms]'): {exc}") from exc
    return hashing, signing, verifying


NEEDS_VENDOR_KEY = "--oms signs with the vendor's key: give --key (keyless OMS signing is not supported here)"
NEEDS_KEY_FILE = "--oms needs a key file: model_signing reads the private key from a PEM file, and a PKCS#11 key never leaves its token"


def require_oms_key(key: PrivateKey | None) -> None:
    """Fail before any work when ``--oms`` cannot be honoured: no key, a token key, a non-P-256 key, or no library."""
    from .pkcs11 import TokenPrivateKey

    if key is None:
        raise UsageError(NEEDS_VENDOR_KEY)
    if isinstance(key, TokenPrivateKey):
        raise UsageError(NEEDS_KEY_FILE)
    if algorithm_of(key) is not Algorithm.P256:
        raise UsageError("--oms needs a P-256 key: model_signing's key signer supports elliptic-curve keys, not Ed25519")
    _library()


def _hashing_config(hashing: Any) -> Any:
    # Files as a whole, SHA-256, nothing ignored beyond the library's default (git metadata): every pack file counts.
    return hashing.Config().use_file_serialization(hashing_algorithm="sha256")


def oms_file_digests(signature: bytes) -> dict[str, str]:
    """The file -> SHA-256 map an OMS signature's statement lists (not verified here: see :func:`verify_oms`)."""
    try:
        statement = loads_strict(read_unverified_payload(signature), "OMS statement")
        if statement.get("predicateType") != OMS_PREDICATE_TYPE:
            raise ValueError(f"predicate type {statement.get('predicateType')!r} is not OpenSSF model signing's")
        return {str(r["name"]): str(r["digest"]) for r in statement["predicate"]["resources"] if r.get("algorithm") == "sha256"}
    except (KeyError, TypeError, ValueError, AttributeError, UnreadableInputError, AttestationError) as exc:
        raise VerificationError(f"not an OpenSSF model signature: {exc}") from exc


def digest_mismatches(signed: Mapping[str, str], attested: Mapping[str, str]) -> list[str]:
    """How the OMS file list differs from the acceptance statement's pack files (``{path: sha256}``)."""
    diff = diff_files(attested, signed)
    out = [f"{name}: the OMS signature lists another SHA-256" for name in diff.differ]
    out += [f"{name}: attested but not in the OMS signature" for name in diff.missing]
    out += [f"{name}: in the OMS signature but not attested" for name in diff.extra]
    return out


def oms_signature(pack_dir: Path, key: PrivateKey, attested: Mapping[str, str]) -> bytes:
    """The OMS signature of ``pack_dir`` with ``key``, in memory (the caller writes it with its other outputs).

    ``attested`` is the acceptance statement's ``{pack path: sha256}``: the OMS
    signature must list exactly those files with those digests, or it is refused.
    """
    require_oms_key(key)
    _refuse_special_files(pack_dir)
    hashing, signing, _ = _library()
    password = secrets.token_urlsafe(32).encode()
    with tempfile.TemporaryDirectory(prefix="uc-attest-oms-") as tmp:
        key_file = Path(tmp) / "signing.pem"
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(private_key_pem(key, password))
        sig_file = Path(tmp) / "model.sig"
        config = signing.Config().use_elliptic_key_signer(private_key=key_file, password=password)
        try:
            config.set_hashing_config(_hashing_config(hashing)).sign(pack_dir, sig_file)
        except (ValueError, OSError) as exc:
            raise VerificationError(f"OpenSSF model signing failed: {refusal_reason(exc)}") from exc
        signature = sig_file.read_bytes()
    mismatches = digest_mismatches(oms_file_digests(signature), attested)
    if mismatches:
        raise VerificationError(f"the pack changed while it was being signed: {mismatches[0]}")
    return signature


def _refuse_special_files(pack_dir: Path) -> None:
    """The library opens every file itself: a FIFO would block it, a device would feed it forever."""
    special = special_files_under(pack_dir)
    if special:
        raise VerificationError(f"{special[0]} is not a regular file")


def refusal_reason(exc: BaseException) -> str:
    """A one-line reason for a refusal, never empty: some errors (``InvalidSignature``) carry no message."""
    from cryptography.exceptions import InvalidSignature

    text = " ".join(str(exc).split())[:300]
    if text:
        return text
    if isinstance(exc, InvalidSignature):
        return "the signature does not verify with the vendor's public key (InvalidSignature)"
    return f"{type(exc).__name__} (the library gave no message)"


class OmsStatus(BaseModel):
    """The advisory check of an OMS signature: is it there, does it verify, does it cover the attested files."""

    path: str
    status: Literal["valid", "invalid", "absent", "not-checked"]
    detail: str


def verify_oms(pack_dir: Path, signature_path: Path, public_key: Path | None, attested: Mapping[str, str]) -> OmsStatus:
    """Verify the OMS signature at ``signature_path`` with the vendor's public key (PEM file).

    Valid means: ``model_signing`` accepts the directory with that key, and the
    files it signed are exactly the acceptance statement's (``attested``).
    """
    where = str(signature_path)
    if not signature_path.exists() and not signature_path.is_symlink():
        return OmsStatus(path=where, status="absent", detail="no OpenSSF model signature beside the bundle")
    if public_key is None:
        return OmsStatus(path=where, status="not-checked", detail="present; verifying it needs the vendor's public key (--key), not keyless trust")
    try:
        hashing, _, verifying = _library()
    except UsageError as exc:
        return OmsStatus(path=where, status="not-checked", detail=f"present; {exc}")
    try:
        _refuse_special_files(pack_dir)
        signed = oms_file_digests(bytes(read_regular_file(signature_path, MAX_SIGNATURE_BYTES)))
        config = verifying.Config().use_elliptic_key_verifier(public_key=public_key)
        with contextlib.redirect_stdout(None):  # the library prints warnings about old formats on stdout
            config.set_hashing_config(_hashing_config(hashing)).verify(pack_dir, signature_path)
    except Exception as exc:  # noqa: BLE001 - the library raises ValueError, OSError, protobuf and crypto errors alike
        return OmsStatus(path=where, status="invalid", detail=f"model_signing refuses it: {refusal_reason(exc)}")
    mismatches = digest_mismatches(signed, attested)
    if mismatches:
        return OmsStatus(path=where, status="invalid", detail=f"valid signature over other files: {mismatches[0]}")
    return OmsStatus(path=where, status="valid", detail=f"model_signing accepts it with the vendor's key; it covers the same {len(signed)} files")
