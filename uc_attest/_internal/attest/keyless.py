"""Keyless (Sigstore) signing and offline keyless verification, through the ``sigstore`` package.

Signing (vendor, online): an OIDC identity token (ambient in CI, else the
browser flow) gets a short-lived Fulcio certificate for an ephemeral P-256 key;
the DSSE envelope over our payload is logged in Rekor; the result is a standard
Sigstore bundle v0.3 with ``certificate`` and one ``tlogEntries`` entry.

Verification (customer, offline): the customer copies the Sigstore
``trusted_root.json`` (Fulcio CAs, Rekor and CT log keys, TSAs) once, and
states which identity (certificate SAN: an e-mail or a workflow URI) and which
OIDC issuer they expect. ``sigstore``'s verifier checks the certificate chain
at the logged time, the embedded SCT, the log entry's inclusion proof and
signed checkpoint (and inclusion promise), the identity policy and the DSSE
signature, all without network access.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from ..errors import UnreadableInputError, UsageError
from .dsse import IN_TOTO_PAYLOAD_TYPE
from .errors import BundleFormatError, IdentityError, SignatureError


def _read_trusted_root(path: str | os.PathLike[str]):  # type: ignore[no-untyped-def]
    from sigstore.models import TrustedRoot

    p = Path(path)
    if not p.is_file():
        raise UnreadableInputError(f"trusted root not found: {p}")
    try:
        return TrustedRoot.from_file(str(p))
    except Exception as exc:  # noqa: BLE001 - sigstore raises several kinds; all mean "not a trusted root"
        raise UnreadableInputError(f"{p} is not a Sigstore trusted_root.json ({type(exc).__name__}: {exc})") from None


def verify_keyless_logged(
    raw_bundle: bytes, *, trusted_root: str | os.PathLike[str], identity: str, issuer: str
) -> tuple[bytes, datetime]:
    """Verify a keyless bundle offline; return the DSSE payload bytes and the log's integrated time.

    The integrated time is the one the verifier checked the certificate's
    validity against (Rekor's signed entry timestamp covers it), so it is the
    signing time from a source the signer does not control.

    ``identity`` must equal the certificate's subject alternative name and
    ``issuer`` the OIDC issuer recorded in it. Every failure is typed:
    :class:`BundleFormatError` for a bundle ``sigstore`` cannot load,
    :class:`SignatureError` for a bad DSSE signature, :class:`IdentityError`
    for anything about the certificate, its chain, its log entry or identity.
    """
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import Bundle
    from sigstore.verify import Verifier
    from sigstore.verify.policy import Identity

    if not identity or not issuer:
        raise UsageError("keyless verification needs both the expected identity and the expected OIDC issuer")
    root = _read_trusted_root(trusted_root)
    try:
        bundle = Bundle.from_json(raw_bundle)
    except Exception as exc:  # noqa: BLE001 - InvalidBundle, pydantic and protobuf errors alike
        raise BundleFormatError(f"not a loadable keyless Sigstore bundle: {' '.join(str(exc).split())[:300]}") from None
    try:
        verifier = Verifier(trusted_root=root)
        payload_type, payload = verifier.verify_dsse(bundle, Identity(identity=identity, issuer=issuer))
    except SigstoreError as exc:
        message = " ".join(str(exc).split())
        if "DSSE: invalid signature" in message:
            raise SignatureError("DSSE signature does not verify with the signing certificate's key") from None
        raise IdentityError(f"keyless verification failed: {message[:300]}") from None
    except ValueError as exc:  # malformed certificate extensions and the like
        raise IdentityError(f"keyless verification failed: {' '.join(str(exc).split())[:300]}") from None
    if payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise BundleFormatError(f"DSSE payloadType is {payload_type!r}, expected {IN_TOTO_PAYLOAD_TYPE!r}")
    return bytes(payload), _verified_time(verifier, bundle)


def _verified_time(verifier, bundle) -> datetime:  # type: ignore[no-untyped-def]
    """The earliest time a trusted party vouches for: the log's integrated time or a TSA timestamp.

    ``sigstore`` checks the certificate chain at exactly these times (an
    integrated time counts only with its inclusion promise, a TSA timestamp only
    when it verifies against the trusted root), so none is the signer's word.
    """
    from sigstore.errors import Error as SigstoreError

    try:
        times = [result.time for result in verifier._establish_time(bundle)]  # noqa: SLF001 - no public accessor
    except SigstoreError as exc:
        raise IdentityError(f"keyless verification failed: {' '.join(str(exc).split())[:300]}") from None
    if not times:
        raise IdentityError("the bundle carries no verified time (no log integrated time, no timestamp)")
    return min(times).astimezone(timezone.utc)


def sign_keyless(payload: bytes, *, staging: bool = False, identity_token: str | None = None) -> bytes:
    """Sign in-toto payload bytes with Sigstore (Fulcio + Rekor); return the bundle JSON bytes. Needs network.

    The identity token is, in order: ``identity_token``, the
    ``SIGSTORE_ID_TOKEN`` environment variable, an ambient CI credential, the
    interactive browser flow.
    """
    from sigstore import dsse as sigstore_dsse
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import ClientTrustConfig
    from sigstore.oidc import IdentityToken, Issuer, detect_credential
    from sigstore.sign import SigningContext

    try:
        config = ClientTrustConfig.staging() if staging else ClientTrustConfig.production()
        raw_token = identity_token or os.environ.get("SIGSTORE_ID_TOKEN") or detect_credential()
        if raw_token:
            token = IdentityToken(raw_token)
        else:
            token = Issuer(config.signing_config.get_oidc_url()).identity_token()
        context = SigningContext.from_trust_config(config)
        with context.signer(token, cache=False) as signer:
            bundle = signer.sign_dsse(sigstore_dsse.Statement(payload))
    except SigstoreError as exc:
        raise UsageError(f"Sigstore signing failed: {' '.join(str(exc).split())[:300]}") from None
    except OSError as exc:
        raise UsageError(f"Sigstore signing failed (network?): {exc}") from None
    data = bundle.to_json()
    return (data if data.endswith("\n") else data + "\n").encode("utf-8")
