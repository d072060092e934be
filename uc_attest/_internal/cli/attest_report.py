"""``attest report`` and ``attest verify-report``: render a report, and re-verify one. Argument handling only."""

from __future__ import annotations

from pathlib import Path

import click

from ..attest.bundle import MAX_BUNDLE_BYTES
from ..check.results import MAX_RESULTS_BYTES
from ..errors import UsageError
from ..outputs import ensure_outputs_writable
from ..safe_io import read_input_file
from .common import trust_options



def _read(path: Path, what: str, limit: int) -> bytes:
    """Whole file, or a one-line error (exit 2) for a missing, unreadable or oversized one."""
    return read_input_file(path, what, limit)


@click.command("report")
@click.argument("results_path", metavar="RESULTS.json", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path, dir_okay=False), help="PDF to write")
@click.option("--bundle", type=click.Path(path_type=Path, dir_okay=False), help="attestation bundle to embed (must be the one the results record)")
@click.option("--vsa", type=click.Path(path_type=Path, dir_okay=False), help="the customer's signed verdict to embed (must pin these exact results)")
def report_command(results_path: Path, output: Path, bundle: Path | None, vsa: Path | None) -> None:
    """Render the PDF/A-3 audit report for RESULTS.json (same results, same bytes).

    Embed the attestation bundle with --bundle so that the report can be
    re-verified on its own with `attest verify-report`.
    """
    from ..check.results import load_results
    from ..report import BUNDLE_ATTACHMENT, VSA_ATTACHMENT, render_report

    for given in (results_path, bundle, vsa):
        if given is not None and output.resolve() == given.resolve():
            raise UsageError(f"the report would overwrite its own input {given}")
    ensure_outputs_writable([output], [results_path, bundle, vsa])  # before reading and rendering
    results = load_results(_read(results_path, "results file", MAX_RESULTS_BYTES), str(results_path))
    extra = {}
    if bundle is not None:
        extra[BUNDLE_ATTACHMENT] = _read(bundle, "bundle", MAX_BUNDLE_BYTES)
    if vsa is not None:
        extra[VSA_ATTACHMENT] = _read(vsa, "signed verdict", MAX_BUNDLE_BYTES)
    render_report(results, extra, output)
    click.echo(f"wrote {output} (verdict {results.verdict.value})")
    if bundle is None:
        click.echo("note: no --bundle given; the report cannot be re-verified on its own", err=True)
    if vsa is None:
        click.echo("note: no --vsa given; the report's verdict is UNSIGNED and says so on page 1", err=True)


@click.command("verify-report")
@click.argument("report_path", metavar="REPORT.pdf", type=click.Path(path_type=Path))
@trust_options
@click.option("--customer-key", type=click.Path(path_type=Path, dir_okay=False), help="customer's public key CUSTOMER.pub (verdict signed with --sign-key)")
@click.option("--customer-identity", help="keyless verdict: the customer's expected signer identity (with --trusted-root)")
@click.option("--customer-issuer", help="keyless verdict: the customer's expected OIDC issuer")
@click.option("--pack", "pack_dir", type=click.Path(path_type=Path, file_okay=False), help="the pack you hold: the report must be about it")
@click.option("--manifest-sha256", help="the SHA-256 of the pack manifest (ucpack.json) the report must be about")
def verify_report_command(
    report_path: Path,
    key: Path | None,
    trusted_root: Path | None,
    identity: str | None,
    issuer: str | None,
    customer_key: Path | None,
    customer_identity: str | None,
    customer_issuer: str | None,
    pack_dir: Path | None,
    manifest_sha256: str | None,
) -> None:
    """Verify REPORT.pdf offline: its structure, the vendor's attestation, the customer's signed verdict, the pages.

    Needs the vendor's trust anchor (--key, or --trusted-root/--identity/--issuer)
    and the customer's (--customer-key, or --customer-identity/--customer-issuer
    with --trusted-root); the two must be different signers. With --pack DIR or
    --manifest-sha256 HEX a report about any other pack is NOT VERIFIED. Ends
    with REPORT: VERIFIED (exit 0) or REPORT: NOT VERIFIED (exit 1; 2 when the
    input cannot be read). A report whose verdict is unsigned is never VERIFIED.
    """
    from ..attest.trust import same_signer, trust_anchor
    from ..errors import UcError
    from ..report.verify import MAX_REPORT_BYTES, verify_report_bytes
    from .common import exit_with

    try:
        customer = _customer_anchor(customer_key, trusted_root, customer_identity, customer_issuer)
        trust = trust_anchor(key=key, trusted_root=trusted_root if key is None else None, identity=identity, issuer=issuer)
        if customer is not None and same_signer(trust, customer):
            raise UsageError("the vendor's and the customer's anchors name the same signer: a verdict the vendor signed for itself is not the customer's")
        expected_pack = _expected_manifest(pack_dir, manifest_sha256)
        pdf = _read(report_path, "report", MAX_REPORT_BYTES)
        outcome = verify_report_bytes(pdf, trust, customer, source=str(report_path), pack_manifest_sha256=expected_pack)
    except UcError:
        click.echo("REPORT: NOT VERIFIED")
        raise
    for line in outcome.lines:
        click.echo(line)
    r = outcome.results
    if r is not None:
        click.echo(
            f"recorded verdict: {r.verdict.value} for model {r.artifact.model_name}, pack manifest sha256 {r.artifact.pack_manifest_sha256} "
            f"(checked {r.artifact.checked_at.isoformat()}, policy {r.policy.name})"
        )
    if outcome.verified:
        click.echo("REPORT: VERIFIED")
        return
    click.echo(f"{len(outcome.problems)} problem(s): the verdict in this report is not evidence")
    click.echo("REPORT: NOT VERIFIED")
    exit_with(1)


def _customer_anchor(key: Path | None, trusted_root: Path | None, identity: str | None, issuer: str | None):  # noqa: ANN202 - TrustAnchor | None
    """The customer's anchor from its options, or None when none was given."""
    from ..attest.trust import KeyAnchor, KeylessAnchor

    if (identity is None) != (issuer is None):
        raise UsageError("a keyless customer verdict needs both --customer-identity and --customer-issuer")
    if key is not None and identity is not None:
        raise UsageError("give either --customer-key or --customer-identity/--customer-issuer, not both")
    if key is not None:
        return KeyAnchor(key)
    if identity is None or issuer is None:
        return None
    if trusted_root is None:
        raise UsageError("--customer-identity needs --trusted-root (the Sigstore trusted_root.json)")
    return KeylessAnchor(trusted_root, identity, issuer)


def _expected_manifest(pack_dir: Path | None, manifest_sha256: str | None) -> str | None:
    """The manifest digest the report must name, from --pack DIR or --manifest-sha256 HEX (not both)."""
    import hashlib
    import re

    from ..pack.manifest import MANIFEST_NAME

    if pack_dir is not None and manifest_sha256 is not None:
        raise UsageError("give either --pack or --manifest-sha256, not both")
    if manifest_sha256 is not None:
        if not re.fullmatch(r"[0-9a-fA-F]{64}", manifest_sha256):
            raise UsageError(f"--manifest-sha256 must be 64 hex digits, not {manifest_sha256[:80]!r}")
        return manifest_sha256.lower()
    if pack_dir is None:
        return None
    return hashlib.sha256(_read(pack_dir / MANIFEST_NAME, "pack manifest", 16 << 20)).hexdigest()


__all__ = ["report_command", "verify_report_command"]
