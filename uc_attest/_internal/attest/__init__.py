"""Attestation layer: in-toto Statement v1 + acceptance-test predicate, DSSE, Sigstore bundle v0.3.

Public API::

    from uc_attest._internal.attest import KeyAnchor, verify_bundle
    verified = verify_bundle("pack.sigstore.json", KeyAnchor("vendor.pub"))
    verified.predicate.measurement.pack.perplexity

Importing this package is cheap (no torch); :func:`sign_pack` (the vendor's
acceptance test) loads the evaluation machinery on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .bundle import BUNDLE_MEDIA_TYPE
from .dsse import IN_TOTO_PAYLOAD_TYPE, pae
from .errors import (
    AcceptanceTestError,
    AttestationError,
    BundleFormatError,
    ExpiredError,
    IdentityError,
    KeyFileError,
    KeyMismatchError,
    SignatureError,
    StatementError,
)
from .keys import PASSPHRASE_ENV, Algorithm, fingerprint, load_private_key, load_public_key, write_keypair
from .predicate import PACK_SUBJECT_PREFIX, PREDICATE_TYPE, TOKENS_SUBJECT, AcceptanceTestPredicate
from .statement import STATEMENT_TYPE, Statement
from .trust import KeyAnchor, KeylessAnchor, TrustAnchor
from .verify import SignerInfo, VerifiedAttestation, verify_bundle

if TYPE_CHECKING:
    from .acceptance import SignOptions, SignResult, sign_pack

__all__ = [
    "BUNDLE_MEDIA_TYPE",
    "IN_TOTO_PAYLOAD_TYPE",
    "PACK_SUBJECT_PREFIX",
    "PASSPHRASE_ENV",
    "PREDICATE_TYPE",
    "STATEMENT_TYPE",
    "TOKENS_SUBJECT",
    "AcceptanceTestError",
    "AcceptanceTestPredicate",
    "Algorithm",
    "AttestationError",
    "BundleFormatError",
    "ExpiredError",
    "IdentityError",
    "KeyAnchor",
    "KeyFileError",
    "KeyMismatchError",
    "KeylessAnchor",
    "SignOptions",
    "SignResult",
    "SignatureError",
    "SignerInfo",
    "Statement",
    "StatementError",
    "TrustAnchor",
    "VerifiedAttestation",
    "fingerprint",
    "load_private_key",
    "load_public_key",
    "pae",
    "sign_pack",
    "verify_bundle",
    "write_keypair",
]


def __getattr__(name: str) -> Any:
    if name in ("sign_pack", "SignOptions", "SignResult"):
        from . import acceptance

        return getattr(acceptance, name)
    raise AttributeError(name)
