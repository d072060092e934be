"""``attest report`` and ``attest verify-report``: render a report, and re-verify one. Argument handling only."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import UnreadableInputError, UsageError
from ..safe_io import read_input_file
from .attest_check import TrustArgs, trust_options

MAX_RESULTS_BYTES = 256 << 20
MAX_BUNDLE_BYTES = 64 << 20
MAX_REPORT_BYTES = 512 << 20


def _read(path: Path, what: str, limit: int) -> bytes:
    """Whole file, or a one-line error (exit 2) for a missing, unreadable or oversized one."""
    return read_input_file(path, what, limit)


@click.command("report")
@click.argument("results_path", metavar="RESULTS.json", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path, dir_okay=False), help="PDF to write")
@click.option("--bundle", type=click.Path(path_type=Path, dir_okay=False), help="attestation bundle to embed (must be the one the results record)")
def report_command(results_path: Path, output: Path, bundle: Path | None) -> None:
    """Render the PDF/A-3 audit report for RESULTS.json (same results, same bytes).

    Embed the attestation bundle with --bundle so that the report can be
    re-verified on its own with `attest verify-report`.
    """
    from ..check.results import load_results
    from ..report import BUNDLE_ATTACHMENT, render_report

    for given in (results_path, bundle):
        if given is not None and output.resolve() == given.resolve():
            raise UsageError(f"the report would overwrite its own input {given}")
    results = load_results(_read(results_path, "results file", MAX_RESULTS_BYTES), str(results_path))
    extra = {}
    if bundle is not None:
        extra[BUNDLE_ATTACHMENT] = _read(bundle, "bundle", MAX_BUNDLE_BYTES)
    render_report(results, extra, output)
    click.echo(f"wrote {output} (verdict {results.verdict.value})")
    if bundle is None:
        click.echo("note: no --bundle given; the report cannot be re-verified on its own", err=True)


@click.command("verify-report")
@click.argument("report_path", metavar="REPORT.pdf", type=click.Path(path_type=Path))
@trust_options
@click.option("--no-rerender", is_flag=True, help="skip re-rendering the embedded results to compare the pages byte for byte")
def verify_report_command(
    report_path: Path,
    key: Path | None,
    trusted_root: Path | None,
    identity: str | None,
    issuer: str | None,
    no_rerender: bool,
) -> None:
    """Re-verify REPORT.pdf offline from the evidence embedded in it.

    Extracts the attestation bundle and results.json, verifies the vendor's
    signature, and checks that the results were made for that bundle and agree
    with what it signs. Exits 0 when the report is authentic (whatever verdict
    it records), 1 when it is not.
    """
    from ..report.verify import verify_report_bytes

    trust = TrustArgs(key=key, trusted_root=trusted_root, identity=identity, issuer=issuer).validate()
    pdf = _read(report_path, "report", MAX_REPORT_BYTES)
    # Expiry is judged at check time by the policy; an auditor verifies authenticity, possibly years later.
    outcome = verify_report_bytes(pdf, trust.verifier(allow_expired=True), source=str(report_path), rerender=not no_rerender)
    for line in outcome.lines:
        click.echo(line)
    r = outcome.results
    click.echo(f"recorded verdict: {r.verdict.value} (checked {r.artifact.checked_at.isoformat()}, policy {r.policy.name})")
    click.echo("report verified")


__all__ = ["report_command", "verify_report_command"]
