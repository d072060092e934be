"""``attest bom``: a CycloneDX ML-BOM of an attested pack. Argument handling only."""

from __future__ import annotations

from pathlib import Path

import click

from .common import trust_options


@click.command("bom")
@click.argument("bundle", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--results", "results_path", type=click.Path(path_type=Path, dir_okay=False), help="results.json of attest check: adds the customer's re-measurement")
@click.option("--pack", type=click.Path(path_type=Path, file_okay=False), help="the pack (default: beside the bundle): adds the quantisation properties")
@trust_options
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path, dir_okay=False), help="BOM file to write (CycloneDX 1.6 JSON)")
def bom_command(bundle: Path, results_path: Path | None, pack: Path | None, key: Path | None, trusted_root: Path | None,
                identity: str | None, issuer: str | None, output: Path) -> None:  # fmt: skip
    """Write a CycloneDX 1.6 ML-BOM of the pack BUNDLE attests (signature verified when a trust anchor is given)."""
    from ..atomic import write_bytes_atomic
    from ..check.bom import build_bom
    from ..check.bom_inputs import collect_bom_inputs

    from ..attest.trust import trust_anchor

    anchored = any(v is not None for v in (key, trusted_root, identity, issuer))
    trust = trust_anchor(key=key, trusted_root=trusted_root, identity=identity, issuer=issuer) if anchored else None
    inputs = collect_bom_inputs(bundle, trust, pack, results_path)
    write_bytes_atomic(output, build_bom(inputs))
    state = f"signature verified ({inputs.verified_by})" if inputs.verified_by else "signature NOT verified (no --key or keyless trust given)"
    click.echo(f"wrote {output}: CycloneDX 1.6 ML-BOM; {state}")
