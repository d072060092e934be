"""Typed errors of the attestation layer.

A customer's automation must tell "this attestation is not valid" (exit 1)
apart from "you called me wrongly" (exit 2), and a Python caller must be able to
catch one precise failure (a bad signature, an identity that does not match, an
expired attestation) without parsing messages. Every failure met while
verifying a bundle is an :class:`AttestationError`, a
:class:`~uc_attest._internal.errors.VerificationError`, so the CLI exits 1 for it; key
files and arguments that cannot be used are usage errors (exit 2).
"""

from __future__ import annotations

from ..errors import UsageError, VerificationError


class AttestationError(VerificationError):
    """Base class: the bundle or its statement is not a valid attestation (exit 1)."""


class BundleFormatError(AttestationError):
    """The bundle is not a well-formed Sigstore bundle v0.3 of a shape this verifier accepts."""


class SignatureError(AttestationError):
    """The DSSE signature does not verify with the expected key or certificate."""


class KeyMismatchError(AttestationError):
    """The bundle names a different public key (``publicKey.hint``) than the one expected."""


class IdentityError(AttestationError):
    """Keyless: the certificate, its chain, its log entry or its identity is not the expected one."""


class StatementError(AttestationError):
    """The signed payload is not an in-toto Statement v1 carrying a predicate this version knows."""


class ExpiredError(AttestationError):
    """The attestation's validity window does not include the time of verification."""


class KeyFileError(UsageError):
    """A key file cannot be used: wrong passphrase, wrong kind of key, unknown algorithm (exit 2)."""


class AcceptanceTestError(VerificationError):
    """The acceptance test failed (the pack failed verification, a non-finite perplexity): nothing is signed."""
