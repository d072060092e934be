"""``attest probe``: a live OpenAI-compatible endpoint against the signed measurement. Argument handling only.

Exit codes: 0 the verdict is PASS, 1 it is FAIL (results and report are still
written, and say why), 2 the inputs or the endpoint could not be used at all
(unreachable, too slow, an answer that is not the API's).
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from .common import exit_with, trust_options
from .verdict_options import delivery_options, echo_verdict, prepare_verdict_outputs, verdict_output_options, verdict_signing_options, write_verdict


@click.command("probe")
@click.argument("url")
@click.option("--pack", "pack", required=True, type=click.Path(path_type=Path), help="the attested pack (verified first, as attest check does)")
@delivery_options
@trust_options
@click.option("--policy", "policy_spec", help="policy file or shipped policy name (its [probe] section); default: default")
@click.option("--model", help="model name to ask the endpoint for (default: the one model GET /v1/models lists)")
@click.option("--ca-bundle", type=click.Path(path_type=Path, dir_okay=False, exists=True), help="CA certificates (PEM) for a private CA; TLS is always verified")
@click.option("--timeout", "timeout_s", type=click.FloatRange(0.1, 3600), default=60.0, show_default=True, help="seconds per request (connect and whole answer)")
@click.option("--retries", type=click.IntRange(0, 10), default=2, show_default=True, help="extra attempts after a timeout, a dropped connection, HTTP 429 or 5xx (back-off 1 s, doubling)")
@click.option("--max-windows", type=click.IntRange(1, 100_000), default=256, show_default=True, help="most signed windows sent (one request each), spread evenly")
@click.option("--time-limit", "time_limit_s", type=click.FloatRange(1, 86_400), default=1800.0, show_default=True, help="seconds for the whole probe")
@click.option("--max-response-mb", type=click.IntRange(1, 1024), default=32, show_default=True, help="largest answer read, in MiB")
@verdict_output_options
@click.option("--quiet", is_flag=True, help="no progress bars")
@verdict_signing_options
def probe_command(
    url: str,
    pack: Path,
    bundle: Path | None,
    tokens: Path | None,
    key: Path | None,
    trusted_root: Path | None,
    identity: str | None,
    issuer: str | None,
    policy_spec: str | None,
    model: str | None,
    ca_bundle: Path | None,
    timeout_s: float,
    retries: int,
    max_windows: int,
    time_limit_s: float,
    max_response_mb: int,
    report_path: Path | None,
    json_path: Path | None,
    quiet: bool,
    sign_key: str | None,
    sign_cert: Path | None,
    sign_sigstore: bool,
    sign_staging: bool,
    vsa_out: Path | None,
    allow_open_key_file: bool,
) -> None:
    """Probe the OpenAI-compatible endpoint at URL with the signed evaluation windows of PACK.

    Verifies the vendor's attestation and the pack as attest check does, sends
    every probed window as token ids to URL/v1/completions with prompt
    log-probabilities, recomputes each window's NLL and compares it with the
    signed one under the policy's [probe] tolerances. A bearer token is read
    from UC_ATTEST_PROBE_TOKEN only. A probe proves behaviour on the attested
    windows, not the bytes the endpoint loaded. Exits 1 on FAIL.
    """
    from ..attest.trust import trust_anchor
    from ..check.context import CheckInputs
    from ..evaluate.settings import EvalSettings
    from ..policy import load_policy
    from ..probe.client import TOKEN_ENV, ClientLimits
    from ..probe.run import ProbeInputs, run_probe

    trust = trust_anchor(key=key, trusted_root=trusted_root, identity=identity, issuer=issuer)
    policy = load_policy(policy_spec)
    # before the first request: every refusal about the outputs and the verdict's signature
    outputs = prepare_verdict_outputs(pack=pack, policy=policy, inputs=[bundle, tokens, ca_bundle, *trust.input_paths()], report_path=report_path,
                                      json_path=json_path, vsa_out=vsa_out, sign_key=sign_key, sign_cert=sign_cert,
                                      sign_sigstore=sign_sigstore, sign_staging=sign_staging,
                                      allow_open_key_file=allow_open_key_file)  # fmt: skip
    token = os.environ.get(TOKEN_ENV) or None
    limits = ClientLimits(timeout_seconds=timeout_s, retries=retries, max_response_bytes=max_response_mb << 20, time_limit_seconds=time_limit_s)
    outcome = run_probe(ProbeInputs(
        url=url, model=model, token=token, ca_bundle=ca_bundle, limits=limits, max_windows=max_windows,
        check=CheckInputs(pack=pack, bundle=bundle, tokens=tokens, trust=trust, policy=policy, evaluation=EvalSettings(progress=not quiet)),
    ))  # fmt: skip
    results = outcome.results
    written = write_verdict(results, outcome.bundle_bytes, outputs)
    probe = results.probe
    if probe is not None:
        click.echo(f"endpoint: {probe.endpoint} model {probe.model!r}, API {probe.api}, {probe.transport}; {probe.requests} requests in {probe.seconds:.1f} s "
                   f"(timeout {probe.limits.timeout_seconds:g} s each, {probe.limits.retries} retries, limit {probe.limits.time_limit_seconds:g} s)")  # fmt: skip
        if probe.windows_outside:
            click.echo(f"windows outside the per-window tolerance: {', '.join(str(i) for i in probe.windows_outside)}")
        click.echo(f"what this proves: {probe.proves}")
    echo_verdict(results, outputs, written)
    passed = results.verdict.value == "PASS"
    click.echo("PROBE: PASS" if passed else "PROBE: FAIL")
    if not passed:
        exit_with(1)


__all__ = ["probe_command"]
