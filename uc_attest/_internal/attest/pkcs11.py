"""Signing keys that stay in a hardware token or HSM, through PKCS#11 (python-pkcs11).

A key is named by an RFC 7512 PKCS#11 URI, for example::

    pkcs11:token=customer-hsm;object=verdict-key?module-path=/usr/lib/softhsm/libsofthsm2.so

Path attributes ``token`` (token label) and ``object`` (key label) or ``id``
select the key; the query attribute ``module-path`` names the PKCS#11
library (else ``UC_ATTEST_PKCS11_MODULE``). The user PIN comes from
``pin-value`` in the URI (discouraged: it shows in ``ps``), else
``UC_ATTEST_PKCS11_PIN``, else a prompt on a terminal.

:class:`TokenPrivateKey` presents the token key as a ``cryptography`` P-256
private key whose ``sign`` runs inside the token (the digest is computed here,
the token signs it with CKM_ECDSA, which every token supports, and the raw
r||s result is DER-encoded as everywhere else in this project). The key never
leaves the token: exporting it raises. So every signer in this project (DSSE
bundles, the PDF signature) works unchanged with a token key.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from ..errors import UsageError
from .errors import KeyFileError

URI_SCHEME = "pkcs11:"
MODULE_ENV = "UC_ATTEST_PKCS11_MODULE"
PIN_ENV = "UC_ATTEST_PKCS11_PIN"


SUPPORTED_PATH_ATTRIBUTES = frozenset({"token", "object", "id", "type", "manufacturer", "model", "serial", "slot-id"})
RFC7512_ATTRIBUTES = SUPPORTED_PATH_ATTRIBUTES | {"library-manufacturer", "library-description", "library-version", "slot-manufacturer",
                                                  "slot-description", "pin-value", "pin-source", "module-name", "module-path"}  # fmt: skip
"""Attribute names that may be echoed in an error: never a value, never a name outside this closed set (it may be a PIN)."""


def is_pkcs11_uri(ref: str) -> bool:
    return ref.startswith(URI_SCHEME)


@dataclass(frozen=True)
class Pkcs11Uri:
    """The parts of an RFC 7512 URI this project uses."""

    token: str | None
    object: str | None
    id: bytes | None
    module_path: str | None
    pin: str | None = field(repr=False)

    @classmethod
    def parse(cls, uri: str) -> Pkcs11Uri:
        if not is_pkcs11_uri(uri):
            raise UsageError("not a PKCS#11 URI: it must start with pkcs11:")
        body = uri[len(URI_SCHEME) :]
        path, _, query = body.partition("?")
        attrs = _attributes(path, ";", "path")
        params = _attributes(query, "&", "query")
        unknown = set(attrs) - SUPPORTED_PATH_ATTRIBUTES
        if unknown:
            name = sorted(unknown)[0]
            shown = repr(name) if name in RFC7512_ATTRIBUTES else "(not an RFC 7512 name; not repeated: it may hold a PIN)"
            raise UsageError(f"PKCS#11 URI: unsupported path attribute {shown}")
        if attrs.get("type", "private") != "private":
            raise UsageError("PKCS#11 URI: type must be 'private' (a signing key)")
        if not attrs.get("object") and not attrs.get("id"):
            raise UsageError("PKCS#11 URI needs object=<key label> or id=<key id>")
        key_id = attrs["id"].encode("latin-1") if "id" in attrs else None
        return cls(attrs.get("token"), attrs.get("object"), key_id, params.get("module-path"), params.get("pin-value"))


def _attributes(text: str, separator: str, where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for number, part in enumerate(filter(None, text.split(separator)), start=1):
        name, eq, value = part.partition("=")
        if not eq or not name:  # the text itself is never echoed: it may be a PIN
            raise UsageError(f"PKCS#11 URI: {where} attribute number {number} is not NAME=VALUE (not repeated here: it may hold a PIN)")
        out[name] = unquote(value, encoding="latin-1")
    return out


class TokenPrivateKey(ec.EllipticCurvePrivateKey):
    """A P-256 private key inside a PKCS#11 token; only ``sign`` and ``public_key`` work."""

    def __init__(self, uri: Pkcs11Uri, pin: str) -> None:
        import pkcs11
        from pkcs11.util.ec import encode_ec_public_key

        module = uri.module_path or os.environ.get(MODULE_ENV)
        if not module:
            raise UsageError(f"PKCS#11 URI gives no module-path and {MODULE_ENV} is not set")
        try:
            self._lib = pkcs11.lib(module)
        except (RuntimeError, OSError, pkcs11.PKCS11Error) as exc:
            source = "the URI's module-path" if uri.module_path else MODULE_ENV  # the path is not echoed: a malformed URI may have put a PIN in it
            raise UsageError(f"cannot load the PKCS#11 module that {source} names ({type(exc).__name__})") from None
        self._uri, self._pin = uri, pin
        with self._session() as session:
            private = self._find(session, pkcs11.ObjectClass.PRIVATE_KEY)
            if private.key_type != pkcs11.KeyType.EC:
                raise KeyFileError("the PKCS#11 key is not an elliptic-curve key (only P-256 is supported)")
            public_der = encode_ec_public_key(self._find(session, pkcs11.ObjectClass.PUBLIC_KEY))
        public = serialization.load_der_public_key(public_der)
        if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(public.curve, ec.SECP256R1):
            raise KeyFileError("the PKCS#11 key is not on P-256 (the only curve supported)")
        self._public = public

    def _session(self) -> Any:
        import pkcs11

        try:
            if self._uri.token:
                token = self._lib.get_token(token_label=self._uri.token)
            else:
                token = next(iter(self._lib.get_tokens()))
            return token.open(user_pin=self._pin)
        except pkcs11.NoSuchToken:
            raise UsageError("no PKCS#11 token with the label the URI gives (token=)") from None
        except StopIteration:
            raise UsageError("the PKCS#11 module offers no token") from None
        except pkcs11.PinIncorrect:
            raise KeyFileError("PKCS#11: wrong PIN") from None
        except pkcs11.PKCS11Error as exc:
            raise UsageError(f"PKCS#11: cannot open a session ({type(exc).__name__})") from None

    def _find(self, session: Any, object_class: Any) -> Any:
        import pkcs11

        query: dict[str, Any] = {"object_class": object_class}
        if self._uri.object:
            query["label"] = self._uri.object
        if self._uri.id is not None:
            query["id"] = self._uri.id
        try:
            return session.get_key(**query)
        except pkcs11.NoSuchKey:
            raise UsageError(f"no {object_class.name.lower().replace('_', ' ')} with the URI's object=/id= in the PKCS#11 token") from None
        except pkcs11.MultipleObjectsReturned:
            raise UsageError("the PKCS#11 URI matches several keys; name one by object= and id=") from None

    def sign(self, data: bytes, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:  # type: ignore[override]
        import pkcs11

        if not isinstance(signature_algorithm, ec.ECDSA) or not isinstance(signature_algorithm.algorithm, hashes.SHA256):
            raise KeyFileError("the PKCS#11 key signs ECDSA with SHA-256 only")
        digest = hashlib.sha256(data).digest()
        with self._session() as session:
            raw = self._find(session, pkcs11.ObjectClass.PRIVATE_KEY).sign(digest, mechanism=pkcs11.Mechanism.ECDSA)
        half = len(raw) // 2
        return utils.encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise KeyFileError("a PKCS#11 signing key is not used for key exchange")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        raise KeyFileError("the private key stays in the PKCS#11 token")

    def private_bytes(self, encoding: Any, format: Any, encryption_algorithm: Any) -> bytes:  # noqa: A002
        raise KeyFileError("the private key stays in the PKCS#11 token")

    def __copy__(self) -> TokenPrivateKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> TokenPrivateKey:
        return self


def load_token_key(uri: str, prompt: Callable[[], str] | None = None) -> TokenPrivateKey:
    """Open the key named by ``uri``; the PIN from the URI, ``UC_ATTEST_PKCS11_PIN`` or ``prompt``."""
    try:
        import pkcs11  # noqa: F401
    except ImportError:
        raise UsageError("PKCS#11 keys need python-pkcs11: pip install python-pkcs11") from None
    parsed = Pkcs11Uri.parse(uri)
    pin = parsed.pin or os.environ.get(PIN_ENV)
    if not pin and prompt is not None:
        pin = prompt()
    if not pin:
        raise UsageError(f"PKCS#11 key needs a PIN: set {PIN_ENV} or run interactively")
    return TokenPrivateKey(parsed, pin)
