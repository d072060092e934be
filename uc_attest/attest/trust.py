"""Who the customer trusts: the vendor's public key, or a keyless (Sigstore) identity.

One value carries the whole anchor, so that the check, ``attest
verify-report`` and anything else that verifies a bundle pass one object
around instead of four loose options (key, trusted root, identity, issuer)
and never dispatch on which of them happen to be set. Each anchor verifies a
bundle and says whom it expects, for results written when the signature did
not verify.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .verify import SignerInfo, VerifiedAttestation, verify_bundle


@dataclass(frozen=True)
class KeyAnchor:
    """The vendor's public key file (``VENDOR.pub``): key-signed bundles only."""

    public_key: Path

    def verify(self, bundle: bytes, **options: Any) -> VerifiedAttestation:
        """Verify ``bundle`` against this key (``options`` go to :func:`verify_bundle`: ``at``, ``allow_expired``)."""
        return verify_bundle(bundle, public_key=self.public_key, **options)

    def expected_signer(self) -> SignerInfo:
        """The signer this anchor accepts, by key fingerprint (reads the key file: exit 2 if it is unusable)."""
        from .keys import fingerprint, load_public_key

        return SignerInfo(mode="key", key_fingerprint=fingerprint(load_public_key(self.public_key)))

    def input_paths(self) -> list[Path]:
        return [self.public_key]


@dataclass(frozen=True)
class KeylessAnchor:
    """A copied Sigstore ``trusted_root.json`` and the identity and OIDC issuer the certificate must name."""

    trusted_root: Path
    identity: str
    issuer: str

    def verify(self, bundle: bytes, **options: Any) -> VerifiedAttestation:
        return verify_bundle(bundle, trusted_root=self.trusted_root, identity=self.identity, issuer=self.issuer, **options)

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


__all__ = ["KeyAnchor", "KeylessAnchor", "TrustAnchor", "trust_anchor"]
