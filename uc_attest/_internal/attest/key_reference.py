"""Where a signing key lives: a PEM file (``NAME.key``) or a PKCS#11 token (``pkcs11:...`` URI).

``attest sign --key`` and ``attest check --sign-key`` accept both; everything
downstream sees one private-key object whose ``sign`` either runs here or in
the token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .keys import PrivateKey, load_signing_key
from .pkcs11 import is_pkcs11_uri, load_token_key


def load_key_reference(
    ref: str,
    *,
    passphrase_prompt: Callable[[], bytes] | None = None,
    pin_prompt: Callable[[], str] | None = None,
    allow_open_permissions: bool = False,
) -> PrivateKey:
    """The signing key named by ``ref`` (a path or an RFC 7512 PKCS#11 URI)."""
    if is_pkcs11_uri(ref):
        return load_token_key(ref, prompt=pin_prompt)
    return load_signing_key(ref, prompt=passphrase_prompt, allow_open_permissions=allow_open_permissions)


@dataclass(frozen=True)
class KeyReference:
    """A signing key named but not yet loaded: usage checks run first, a passphrase or PIN prompt only after them."""

    ref: str = field(repr=False)  # a pkcs11: URI may carry pin-value: never printed
    passphrase_prompt: Callable[[], bytes] | None = field(default=None, repr=False)
    pin_prompt: Callable[[], str] | None = field(default=None, repr=False)
    allow_open_permissions: bool = False

    @property
    def in_token(self) -> bool:
        """The key stays in a PKCS#11 token (it can sign, but never be exported)."""
        return is_pkcs11_uri(self.ref)

    def load(self) -> PrivateKey:
        return load_key_reference(self.ref, passphrase_prompt=self.passphrase_prompt, pin_prompt=self.pin_prompt,
                                  allow_open_permissions=self.allow_open_permissions)  # fmt: skip
