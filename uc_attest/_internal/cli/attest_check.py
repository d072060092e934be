"""``attest check``: the customer's offline acceptance check. Argument handling only.

Exit codes: 0 the verdict is PASS, 1 it is FAIL (results and report are still
written, and say why), 2 the inputs could not be used at all.
"""

from __future__ import annotations

from pathlib import Path

import click

from .common import evaluation_options, evaluation_settings, exit_with, trust_options
from .verdict_options import delivery_options, echo_verdict, prepare_verdict_outputs, verdict_output_options, verdict_signing_options, write_verdict


@click.command("check")
@click.argument("pack", type=click.Path(path_type=Path))
@delivery_options
@trust_options
@click.option("--policy", "policy_spec", help="policy file, or a shipped policy name (default, strict, development); default: default")
@verdict_output_options
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
    from ..attest.trust import trust_anchor
    from ..policy import load_policy

    trust = trust_anchor(key=key, trusted_root=trusted_root, identity=identity, issuer=issuer)
    policy = load_policy(policy_spec)
    # before minutes of checking: every refusal about the outputs and the verdict's signature
    outputs = prepare_verdict_outputs(pack=pack, policy=policy, inputs=[bundle, tokens, *trust.input_paths()], report_path=report_path,
                                      json_path=json_path, vsa_out=vsa_out, sign_key=sign_key, sign_cert=sign_cert,
                                      sign_sigstore=sign_sigstore, sign_staging=sign_staging,
                                      allow_open_key_file=allow_open_key_file)  # fmt: skip

    from ..check.run import CheckInputs, run_check

    outcome = run_check(
        CheckInputs(
            pack=pack,
            bundle=bundle,
            tokens=tokens,
            trust=trust,
            policy=policy,
            evaluation=evaluation_settings(streaming=streaming, device=device, quiet=quiet),  # the windows are the signed ones
            fail_fast=fail_fast,
            deployed=deployed,
        )
    )
    results = outcome.results
    import time

    started = time.perf_counter()
    written = write_verdict(results, outcome.bundle_bytes, outputs)
    outcome.timings["outputs"] = round(time.perf_counter() - started, 3)
    echo_verdict(results, outputs, written)
    if not quiet:
        stages = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in outcome.timings.items())
        click.echo(f"time: {stages}", err=True)
    passed = results.verdict.value == "PASS"
    click.echo("CHECK: PASS" if passed else "CHECK: FAIL")
    if not passed:
        exit_with(1)


__all__ = ["check_command"]
