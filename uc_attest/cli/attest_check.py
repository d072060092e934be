"""``attest check``: the customer's offline acceptance check. Argument handling only.

Exit codes: 0 the verdict is PASS, 1 it is FAIL (results and report are still
written, and say why), 2 the inputs could not be used at all.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..errors import UsageError
from ..outputs import check_outputs
from .common import evaluation_options, exit_with
from .verdict_options import verdict_signing, verdict_signing_options


def trust_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """The four trust options shared by ``check`` and ``verify-report``."""
    options = [
        click.option("--key", "key", type=click.Path(path_type=Path, dir_okay=False), help="vendor's public key VENDOR.pub (key-signed bundles)"),
        click.option("--trusted-root", type=click.Path(path_type=Path, dir_okay=False), help="Sigstore trusted_root.json (keyless bundles)"),
        click.option("--identity", help="keyless: expected signer identity (e-mail or URI in the certificate)"),
        click.option("--issuer", help="keyless: expected OIDC issuer URL"),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@click.command("check")
@click.argument("pack", type=click.Path(path_type=Path))
@click.option("--bundle", type=click.Path(path_type=Path, dir_okay=False), help="attestation bundle (default: PACK.sigstore.json beside the pack)")
@click.option("--tokens", type=click.Path(path_type=Path, dir_okay=False), help="evaluation token file (default: beside the bundle)")
@trust_options
@click.option("--policy", "policy_spec", help="policy file, or a shipped policy name (default, strict, development); default: default")
@click.option("--report", "report_path", type=click.Path(path_type=Path, dir_okay=False), help="write the PDF audit report here")
@click.option("--json", "json_path", type=click.Path(path_type=Path, dir_okay=False), help="write results.json here")
@click.option("--quiet", is_flag=True, help="no progress bars")
@click.option("--fail-fast", is_flag=True, help="once a required check fails, skip the costly ones (rebuilding weights, perplexity)")
@click.option("--deployed", type=click.Path(path_type=Path, file_okay=False),
              help="also prove that this served model directory (uc export, save_pretrained) holds exactly the attested model (a required check)")
@verdict_signing_options
@evaluation_options
def check_command(
    pack: Path,
    bundle: Path | None,
    tokens: Path | None,
    key: Path | None,
    trusted_root: Path | None,
    identity: str | None,
    issuer: str | None,
    policy_spec: str | None,
    report_path: Path | None,
    json_path: Path | None,
    quiet: bool,
    fail_fast: bool,
    deployed: Path | None,
    sign_key: str | None,
    sign_cert: Path | None,
    sign_sigstore: bool,
    sign_staging: bool,
    vsa_out: Path | None,
    allow_open_key_file: bool,
    streaming: bool,
    device: str,
) -> None:
    """Check PACK against its signed attestation under a policy, offline.

    Verifies the signature and the signer, every file hash, the bit-exact
    reconstruction of every tensor, and re-measures perplexity; writes
    results.json and a PDF/A-3 audit report when asked. Exits 1 on FAIL.
    """
    from ..policy import load_policy

    from ..attest.trust import trust_anchor

    trust = trust_anchor(key=key, trusted_root=trusted_root, identity=identity, issuer=issuer)
    policy = load_policy(policy_spec)
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
    inputs = [p.resolve() for p in (bundle, tokens, *trust.input_paths(), sign_cert) if p is not None]
    for out in (report_path, json_path, vsa_out):
        if out is not None and (out.resolve() in inputs or out.resolve().is_relative_to(pack.resolve())):
            raise UsageError(f"{out} would overwrite an input (outputs go outside the pack and beside the inputs)")
    check_outputs([report_path, json_path, vsa_out])  # before minutes of checking: every output can be written

    from ..check.run import CheckInputs, run_check
    from ..evaluate.measure import resolve_device

    outcome = run_check(
        CheckInputs(
            pack=pack,
            bundle=bundle,
            tokens=tokens,
            trust=trust,
            policy=policy,
            progress=not quiet,
            fail_fast=fail_fast,
            deployed=deployed,
            streaming=streaming,
            device=resolve_device(device),
        )
    )
    results = outcome.results
    import time

    from ..report.check_outputs import build_check_outputs, write_outputs

    started = time.perf_counter()
    outputs = build_check_outputs(results, outcome.bundle_bytes, json_path=json_path, report_path=report_path, vsa_path=vsa_out, signing=signing)
    write_outputs(outputs)
    outcome.timings["outputs"] = round(time.perf_counter() - started, 3)
    for check in results.checks:
        tag = "" if check.required else " (advisory)"
        click.echo(f"{check.status.value:4}  {check.title}{tag}: {check.summary}")
    click.echo(f"verdict: {results.verdict.value} (policy {results.policy.name}, sha256 {results.policy.sha256[:16]}...)")
    click.echo(signing.describe() if signing.enabled else "verdict signature: UNSIGNED (no --sign-key): the results and report are not evidence of this verdict")
    for path in outputs:
        click.echo(f"wrote {path}")
    if not quiet:
        stages = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in outcome.timings.items())
        click.echo(f"time: {stages}", err=True)
    passed = results.verdict.value == "PASS"
    click.echo("CHECK: PASS" if passed else "CHECK: FAIL")
    if not passed:
        exit_with(1)


__all__ = ["check_command", "trust_options"]
