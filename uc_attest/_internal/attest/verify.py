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

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import UnreadableInputError, UsageError
from ..safe_io import read_input_file
from .bundle import MAX_BUNDLE_BYTES
from .errors import ExpiredError, StatementError
from .predicate import PREDICATE_TYPE, AcceptanceTestPredicate
from .statement import Statement, parse_statement
from .trust import SignedPayload, SignerInfo, TrustAnchor

__all__ = ["SignedPayload", "SignerInfo", "VerifiedAttestation", "check_validity", "parse_predicate", "read_bundle_bytes", "verify_bundle", "verify_signed_payload"]

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
    anchor: TrustAnchor,
    *,
    at: datetime | None = None,
    allow_expired: bool = False,
) -> VerifiedAttestation:
    """Verify an attestation bundle under ``anchor`` and return the verified statement, or raise a typed error.

    ``anchor`` is a :class:`~.trust.KeyAnchor` (the vendor's ``NAME.pub``) or a
    :class:`~.trust.KeylessAnchor` (a copied Sigstore ``trusted_root.json``, the
    identity and the issuer); an anchor of the other mode than the bundle's is a
    :class:`~uc_attest._internal.errors.UsageError`. ``at`` is the time against which
    ``expiresAt`` is checked (default: now); ``allow_expired`` skips that check
    (for auditing old attestations: the signature is still verified).

    Errors: :class:`~.errors.BundleFormatError`, :class:`~.errors.KeyMismatchError`,
    :class:`~.errors.SignatureError`, :class:`~.errors.IdentityError`,
    :class:`~.errors.StatementError`, :class:`~.errors.ExpiredError` (all
    :class:`~.errors.AttestationError`, exit 1); unreadable files are exit-2 errors.
    """
    signed = verify_signed_payload(bundle, anchor)
    payload, signer = signed.payload, signed.signer
    statement = parse_statement(payload)
    predicate = parse_predicate(statement)
    check_validity(predicate, at=at, allow_expired=allow_expired)
    return VerifiedAttestation(statement=statement, predicate=predicate, signer=signer, payload=payload, logged_at=signed.logged_at)


def verify_signed_payload(bundle: bytes | str | os.PathLike[str], anchor: TrustAnchor) -> SignedPayload:
    """Check a bundle's DSSE signature and signer under ``anchor``; return the payload bytes (not yet parsed) and the signer.

    Shared by the vendor's attestation and the customer's verification summary:
    the two differ only in the predicate they carry. In keyless mode
    ``logged_at`` is the transparency log's integrated time, which
    the verifier has checked (the signer cannot choose it).
    """
    return anchor.verify_payload(read_bundle_bytes(bundle))


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
