"""Verification of an attestation bundle: signature first, then the statement, then the predicate.

Order matters. The bundle JSON is parsed only as far as needed to find the
envelope and the key material; the signature is checked over the payload
bytes exactly as received; only a payload whose signature verified is parsed,
as an in-toto Statement v1 whose predicate type this version knows; last, the
validity window is checked. Each step raises its own
:class:`~.errors.AttestationError` subclass.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import UnreadableInputError, UsageError
from ..safe_io import read_input_file
from .bundle import MAX_BUNDLE_BYTES, BundleMode, bundle_mode, load_bundle_json, parse_key_bundle
from .dsse import verify_envelope
from .errors import ExpiredError, KeyMismatchError, StatementError
from .keys import PublicKey, fingerprint, load_public_key, load_public_key_pem
from .predicate import PREDICATE_TYPE, AcceptanceTestPredicate
from .statement import Statement, parse_statement

PublicKeyInput = PublicKey | str | os.PathLike[str] | bytes
"""A public key object, a path to ``NAME.pub``, or SPKI PEM bytes."""


class SignerInfo(BaseModel):
    """Who signed: a key (by fingerprint) or a Sigstore identity."""

    model_config = ConfigDict(frozen=True)

    mode: Literal["key", "keyless"]
    key_fingerprint: str | None = None
    identity: str | None = None
    issuer: str | None = None


class SignedPayload(BaseModel):
    """A bundle whose signature verified: the payload bytes (not yet parsed), the signer, and the log time."""

    model_config = ConfigDict(frozen=True)

    payload: bytes
    signer: SignerInfo
    logged_at: datetime | None = None
    """Keyless only: the transparency log's verified integrated time, which the signer does not choose."""


class VerifiedAttestation(BaseModel):
    """What :func:`verify_bundle` returns: the verified statement, its typed predicate and the signer."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    statement: Statement
    predicate: AcceptanceTestPredicate
    signer: SignerInfo
    payload: bytes
    logged_at: datetime | None = None
    """Keyless only: the transparency log's verified integrated time; ``predicate.signed_at`` is the signer's word."""

    def subject_digests(self) -> dict[str, str]:
        return self.statement.subject_digests()


def _as_public_key(value: PublicKeyInput) -> PublicKey:
    if isinstance(value, bytes):
        return load_public_key_pem(value)
    if isinstance(value, (str, os.PathLike)):
        return load_public_key(value)
    return value


def read_bundle_bytes(bundle: bytes | str | os.PathLike[str]) -> bytes:
    """Bundle bytes from bytes or a path; a missing or unreadable file is an input error (exit 2)."""
    if isinstance(bundle, bytes):
        return bundle
    path = Path(bundle)
    try:
        return read_input_file(path, "bundle", MAX_BUNDLE_BYTES)
    except UsageError as exc:  # a missing bundle given to the library API: unreadable input, as before
        raise UnreadableInputError(str(exc)) from None


def verify_bundle(
    bundle: bytes | str | os.PathLike[str],
    *,
    public_key: PublicKeyInput | None = None,
    trusted_root: str | os.PathLike[str] | None = None,
    identity: str | None = None,
    issuer: str | None = None,
    at: datetime | None = None,
    allow_expired: bool = False,
) -> VerifiedAttestation:
    """Verify an attestation bundle and return the verified statement, or raise a typed error.

    Key mode needs ``public_key`` (the vendor's ``NAME.pub``); keyless mode
    needs ``trusted_root`` (a copied Sigstore ``trusted_root.json``),
    ``identity`` and ``issuer``. Giving the material of the wrong mode is a
    :class:`~uc_attest.errors.UsageError`. ``at`` is the time against which
    ``expiresAt`` is checked (default: now); ``allow_expired`` skips that check
    (for auditing old attestations: the signature is still verified).

    Errors: :class:`~.errors.BundleFormatError`, :class:`~.errors.KeyMismatchError`,
    :class:`~.errors.SignatureError`, :class:`~.errors.IdentityError`,
    :class:`~.errors.StatementError`, :class:`~.errors.ExpiredError` (all
    :class:`~.errors.AttestationError`, exit 1); unreadable files and missing
    arguments are exit-2 errors.
    """
    signed = verify_signed_payload(bundle, public_key=public_key, trusted_root=trusted_root, identity=identity, issuer=issuer)
    payload, signer = signed.payload, signed.signer
    statement = parse_statement(payload)
    predicate = parse_predicate(statement)
    check_validity(predicate, at=at, allow_expired=allow_expired)
    return VerifiedAttestation(statement=statement, predicate=predicate, signer=signer, payload=payload, logged_at=signed.logged_at)


def verify_signed_payload(
    bundle: bytes | str | os.PathLike[str],
    *,
    public_key: PublicKeyInput | None = None,
    trusted_root: str | os.PathLike[str] | None = None,
    identity: str | None = None,
    issuer: str | None = None,
) -> SignedPayload:
    """Check a bundle's DSSE signature and signer; return the payload bytes (not yet parsed) and the signer.

    Shared by the vendor's attestation and the customer's verification summary:
    the two differ only in the predicate they carry. In keyless mode
    ``logged_at`` is the transparency log's integrated time, which
    the verifier has checked (the signer cannot choose it).
    """
    raw = read_bundle_bytes(bundle)
    data = load_bundle_json(raw)
    mode = bundle_mode(data)
    if mode is BundleMode.KEY:
        if public_key is None:
            raise UsageError("this bundle was signed with a key: give the signer's public key (NAME.pub)")
        key = _as_public_key(public_key)
        parsed = parse_key_bundle(data)
        expected = fingerprint(key)
        hint = parsed.verification_material.public_key.hint
        if hint != expected:
            raise KeyMismatchError(f"bundle was signed by key {hint[:16]}…, not by the given key {expected[:16]}…")
        return SignedPayload(payload=verify_envelope(parsed.dsse_envelope, key), signer=SignerInfo(mode="key", key_fingerprint=expected))
    if trusted_root is None or not identity or not issuer:
        raise UsageError("this bundle is keyless (Sigstore): give a trusted_root.json, the expected identity and the OIDC issuer")
    from .keyless import verify_keyless_logged

    payload, logged_at = verify_keyless_logged(raw, trusted_root=trusted_root, identity=identity, issuer=issuer)
    return SignedPayload(payload=payload, signer=SignerInfo(mode="keyless", identity=identity, issuer=issuer), logged_at=logged_at)


def parse_predicate(statement: Statement) -> AcceptanceTestPredicate:
    """The typed predicate of a verified statement; an unknown predicate type is refused."""
    if statement.predicate_type != PREDICATE_TYPE:
        raise StatementError(f"unknown predicateType {statement.predicate_type!r} (this version knows {PREDICATE_TYPE})")
    try:
        return AcceptanceTestPredicate.model_validate(statement.predicate)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ()))
        raise StatementError(f"malformed acceptance-test predicate at {where}: {err.get('msg', 'invalid')}") from None


def check_validity(predicate: AcceptanceTestPredicate, *, at: datetime | None = None, allow_expired: bool = False) -> None:
    """Refuse an attestation whose ``expiresAt`` has passed at time ``at`` (default: now)."""
    if allow_expired:
        return
    now = (at or datetime.now(timezone.utc)).astimezone(timezone.utc)
    if now > predicate.expires_at:
        raise ExpiredError(f"attestation expired at {predicate.expires_at.isoformat()} (checked at {now.isoformat(timespec='seconds')})")
