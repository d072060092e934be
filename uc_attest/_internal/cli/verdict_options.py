"""What ``attest check`` and ``attest probe`` share: the delivery they read, the verdict files they write, how the verdict is signed.

Argument handling only. Both commands judge a delivery (pack, bundle, token
file) under a policy and write the same results, report and signed verdict, so
their options, the refusals that come before any work (an output that would
overwrite an input, a policy that asks for a signature nobody gives) and the
lines that print the verdict live here once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ..errors import UsageError
from ..outputs import ensure_outputs_writable
from .common import with_options


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


def delivery_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """--bundle / --tokens: the vendor's attestation and the evaluation token file it pins."""
    options = [
        click.option("--bundle", type=click.Path(path_type=Path, dir_okay=False), help="attestation bundle (default: PACK.sigstore.json beside the pack)"),
        click.option("--tokens", type=click.Path(path_type=Path, dir_okay=False), help="evaluation token file (default: beside the bundle)"),
    ]
    return with_options(function, options)


def verdict_output_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """--report / --json: the PDF audit report and results.json."""
    options = [
        click.option("--report", "report_path", type=click.Path(path_type=Path, dir_okay=False), help="write the PDF audit report here"),
        click.option("--json", "json_path", type=click.Path(path_type=Path, dir_okay=False), help="write results.json here"),
    ]
    return with_options(function, options)


@dataclass(frozen=True)
class VerdictOutputs:
    """Where the verdict goes (every path checked writable before any work) and how it is signed."""

    report: Path | None
    json: Path | None
    vsa: Path | None
    signing: Any  # uc_attest._internal.report.check_outputs.VerdictSigning


def prepare_verdict_outputs(*, pack: Path, policy: Any, inputs: Sequence[Path | None], report_path: Path | None, json_path: Path | None,
                            vsa_out: Path | None, sign_key: str | None, sign_cert: Path | None, sign_sigstore: bool, sign_staging: bool,
                            allow_open_key_file: bool) -> VerdictOutputs:  # fmt: skip
    """Every refusal about the outputs and the verdict's signature, before minutes of checking.

    ``inputs`` are the files the command reads (bundle, tokens, trust anchor,
    certificates): no output may be one of them, nor lie inside the pack.
    """
    if report_path is not None and json_path is not None and report_path.resolve() == json_path.resolve():
        raise UsageError("--report and --json cannot be the same file")
    signing = verdict_signing(sign_key, sign_cert, sign_sigstore, sign_staging, report_path, allow_open_key_file)
    if policy.policy.verdict.require_signature and not signing.enabled:
        raise UsageError(f"policy {policy.policy.name} requires a signed verdict: give --sign-key CUSTOMER.key or --sign-sigstore")
    if signing.enabled and vsa_out is None:
        from ..report.check_outputs import default_vsa_path

        vsa_out = default_vsa_path(json_path, report_path)
    outs = [p.resolve() for p in (report_path, json_path, vsa_out) if p is not None]
    if len(set(outs)) != len(outs) or (vsa_out is not None and not vsa_out.resolve().parent.is_dir()):
        raise UsageError("--report, --json and --vsa-out must be different files in existing directories")
    read = [p.resolve() for p in (*inputs, sign_cert) if p is not None]
    for out in outs:
        if out in read or out.is_relative_to(pack.resolve()):
            raise UsageError(f"{out} would overwrite an input (outputs go outside the pack and beside the inputs)")
    ensure_outputs_writable([report_path, json_path, vsa_out])  # every output can be written
    return VerdictOutputs(report=report_path, json=json_path, vsa=vsa_out, signing=signing)


def write_verdict(results: Any, bundle_bytes: bytes, outputs: VerdictOutputs) -> list[Path]:
    """Write results.json, the report and the signed verdict (all or none); print one line per check."""
    from ..report.check_outputs import build_check_outputs, write_outputs

    written = build_check_outputs(results, bundle_bytes, json_path=outputs.json, report_path=outputs.report, vsa_path=outputs.vsa,
                                  signing=outputs.signing)  # fmt: skip
    write_outputs(written)
    for check in results.checks:
        tag = "" if check.required else " (advisory)"
        click.echo(f"{check.status.value:4}  {check.title}{tag}: {check.summary}")
    return list(written)


def echo_verdict(results: Any, outputs: VerdictOutputs, written: Sequence[Path]) -> None:
    """The verdict line, who signed it (or that nobody did), and the files written."""
    click.echo(f"verdict: {results.verdict.value} (policy {results.policy.name}, sha256 {results.policy.sha256[:16]}...)")
    signing = outputs.signing
    click.echo(signing.describe() if signing.enabled else "verdict signature: UNSIGNED (no --sign-key): the results and report are not evidence of this verdict")
    for path in written:
        click.echo(f"wrote {path}")


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
    return with_options(function, options)


def verdict_signing(
    sign_key: str | None, sign_cert: Path | None, sign_sigstore: bool, sign_staging: bool, report_path: Path | None, allow_open_key_file: bool
) -> Any:
    """The :class:`~uc_attest._internal.report.check_outputs.VerdictSigning` the options ask for, loaded and checked up front."""
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
