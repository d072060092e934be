"""``attest check``'s options for signing the customer's verdict. Argument handling only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..errors import UsageError


def _prompt_passphrase() -> bytes:
    return click.prompt("Passphrase for the signing key", hide_input=True, err=True).encode("utf-8")


def _prompt_pin() -> str:
    return str(click.prompt("PIN of the PKCS#11 token", hide_input=True, err=True))


def cli_key_reference(ref: str, allow_open_key_file: bool) -> Any:
    """The private key named on the command line (file or pkcs11: URI), not yet loaded; prompts only on a terminal."""
    from ..attest.key_reference import KeyReference
    from .attest_keys import stdin_is_interactive

    interactive = stdin_is_interactive()
    return KeyReference(ref, passphrase_prompt=_prompt_passphrase if interactive else None,
                        pin_prompt=_prompt_pin if interactive else None, allow_open_permissions=allow_open_key_file)  # fmt: skip


def load_cli_signing_key(ref: str, allow_open_key_file: bool) -> Any:
    """The private key named on the command line (file or pkcs11: URI), loaded now."""
    return cli_key_reference(ref, allow_open_key_file).load()


def verdict_signing_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """--sign-key / --sign-cert / --sign-sigstore / --sign-staging / --vsa-out / --allow-open-key-file."""
    options = [
        click.option("--sign-key", help="sign the verdict with this private key: NAME.key or a pkcs11: URI (RFC 7512)"),
        click.option("--sign-cert", type=click.Path(path_type=Path, dir_okay=False), help="certificate for the PDF signature (default: NAME.crt beside NAME.key)"),
        click.option("--sign-sigstore", is_flag=True, help="sign the verdict keyless with Sigstore (needs network and an OIDC identity)"),
        click.option("--sign-staging", is_flag=True, help="with --sign-sigstore: Sigstore's staging instance"),
        click.option("--vsa-out", type=click.Path(path_type=Path, dir_okay=False), help="signed verdict bundle (default: RESULTS.vsa.sigstore.json beside --json)"),
        click.option("--allow-open-key-file", is_flag=True, help="use a private key file that group or others can read (refused by default)"),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def verdict_signing(
    sign_key: str | None, sign_cert: Path | None, sign_sigstore: bool, sign_staging: bool, report_path: Path | None, allow_open_key_file: bool
) -> Any:
    """The :class:`~uc_attest.report.check_outputs.VerdictSigning` the options ask for, loaded and checked up front."""
    from ..report.check_outputs import VerdictSigning

    if sign_key is not None and sign_sigstore:
        raise UsageError("give at most one of --sign-key and --sign-sigstore")
    if sign_staging and not sign_sigstore:
        raise UsageError("--sign-staging only applies to --sign-sigstore")
    if sign_cert is not None and sign_key is None:
        raise UsageError("--sign-cert needs --sign-key")
    if sign_sigstore:
        return VerdictSigning(keyless=True, staging=sign_staging)
    if sign_key is None:
        return VerdictSigning()
    from ..attest.certificates import certificate_path_for_key, check_certificate_matches, load_certificate
    from ..attest.pkcs11 import is_pkcs11_uri

    key = load_cli_signing_key(sign_key, allow_open_key_file)
    certificate = None
    if report_path is not None:
        cert_path = sign_cert or (None if is_pkcs11_uri(sign_key) else certificate_path_for_key(sign_key))
        if cert_path is None or not cert_path.is_file():
            raise UsageError(
                f"signing the PDF report needs a certificate: {cert_path or '--sign-cert CERT'} "
                "(attest keygen --organization ORG writes NAME.crt, or give your own with --sign-cert)"
            )
        certificate = load_certificate(cert_path)
        check_certificate_matches(certificate, key, str(cert_path))
    return VerdictSigning(key=key, certificate=certificate)
