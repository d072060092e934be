"""Who is trusted to have signed: a public key, or a keyless (Sigstore) identity.

A :data:`TrustAnchor` is the only way to verify anything in uc_attest: the
vendor's attestation in ``attest check``, the customer's signed verdict and
PDF signature in ``attest verify-report``, the bundle in ``attest bom``. One
value carries the whole anchor, so that no caller passes four loose options
(key, trusted root, identity, issuer) or dispatches on which of them happen
to be set. Each anchor checks a bundle's DSSE signature and signer, and says
whom it expects, for results written when the signature did not verify.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from ..errors import UsageError
from .keys import PublicKey

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


@dataclass(frozen=True)
class KeyAnchor:
    """A public key (``NAME.pub``, PEM bytes or a key object): key-signed bundles only."""

    public_key: PublicKeyInput

    def key(self) -> PublicKey:
        """The key itself (reads the file: exit 2 if it is unusable)."""
        from .keys import load_public_key, load_public_key_pem

        if isinstance(self.public_key, bytes):
            return load_public_key_pem(self.public_key)
        if isinstance(self.public_key, (str, os.PathLike)):
            return load_public_key(self.public_key)
        return self.public_key

    def verify_payload(self, raw: bytes) -> SignedPayload:
        """Check the DSSE signature of a key-mode bundle against this key; return the payload bytes."""
        from .bundle import BundleMode, bundle_mode, load_bundle_json, parse_key_bundle
        from .dsse import verify_envelope
        from .errors import KeyMismatchError
        from .keys import fingerprint

        data = load_bundle_json(raw)
        if bundle_mode(data) is not BundleMode.KEY:
            raise UsageError("this bundle is keyless (Sigstore): give a trusted_root.json, the expected identity and the OIDC issuer")
        key = self.key()
        parsed = parse_key_bundle(data)
        expected = fingerprint(key)
        hint = parsed.verification_material.public_key.hint
        if hint != expected:
            raise KeyMismatchError(f"bundle was signed by key {hint[:16]}…, not by the given key {expected[:16]}…")
        return SignedPayload(payload=verify_envelope(parsed.dsse_envelope, key), signer=SignerInfo(mode="key", key_fingerprint=expected))

    def expected_signer(self) -> SignerInfo:
        """The signer this anchor accepts, by key fingerprint."""
        from .keys import fingerprint

        return SignerInfo(mode="key", key_fingerprint=fingerprint(self.key()))

    def input_paths(self) -> list[Path]:
        return [Path(self.public_key)] if isinstance(self.public_key, (str, os.PathLike)) else []


@dataclass(frozen=True)
class KeylessAnchor:
    """A copied Sigstore ``trusted_root.json`` and the identity and OIDC issuer the certificate must name."""

    trusted_root: Path
    identity: str
    issuer: str

    def verify_payload(self, raw: bytes) -> SignedPayload:
        """Check a keyless bundle (certificate, identity, issuer, transparency log); return the payload bytes."""
        from .bundle import BundleMode, bundle_mode, load_bundle_json
        from .keyless import verify_keyless_logged

        if bundle_mode(load_bundle_json(raw)) is BundleMode.KEY:
            raise UsageError("this bundle was signed with a key: give the signer's public key (NAME.pub)")
        payload, logged_at = verify_keyless_logged(raw, trusted_root=self.trusted_root, identity=self.identity, issuer=self.issuer)
        return SignedPayload(payload=payload, signer=SignerInfo(mode="keyless", identity=self.identity, issuer=self.issuer), logged_at=logged_at)

    def expected_signer(self) -> SignerInfo:
        return SignerInfo(mode="keyless", identity=self.identity, issuer=self.issuer)

    def input_paths(self) -> list[Path]:
        return [self.trusted_root]


TrustAnchor = KeyAnchor | KeylessAnchor


def trust_anchor(
    key: Path | None = None, trusted_root: Path | None = None, identity: str | None = None, issuer: str | None = None
) -> TrustAnchor:
    """The anchor the options name: exactly a key, or all three keyless values; anything else is a usage error."""
    keyless = (trusted_root, identity, issuer)
    if key is not None and any(v is not None for v in keyless):
        raise UsageError("give either --key or --trusted-root/--identity/--issuer, not both")
    if key is not None:
        return KeyAnchor(Path(key))
    if trusted_root is not None and identity and issuer:
        return KeylessAnchor(Path(trusted_root), identity, issuer)
    if any(v is not None for v in keyless):
        raise UsageError("keyless verification needs all of --trusted-root, --identity and --issuer")
    raise UsageError("give the vendor's public key (--key VENDOR.pub) or --trusted-root FILE --identity ID --issuer URL")


def same_signer(a: TrustAnchor, b: TrustAnchor) -> bool:
    """Whether two anchors accept the same signer (the same key, or the same identity and issuer)."""
    return a.expected_signer() == b.expected_signer()


__all__ = ["KeyAnchor", "KeylessAnchor", "PublicKeyInput", "SignedPayload", "SignerInfo", "TrustAnchor", "same_signer", "trust_anchor"]
