"""``attest bom --results``: results.json made for another vendor bundle is refused (bound by the bundle's SHA-256)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click
import pytest
from support.cli import run_cli

from uc_attest._internal.attest.keys import write_keypair
from uc_attest._internal.cli.attest_bom import bom_command
from uc_attest._internal.cli.attest_check import check_command
from uc_attest._internal.cli.attest_sign import sign_command

pytestmark = pytest.mark.slow

GROUP = click.Group("attest", commands=[sign_command, check_command, bom_command])


@pytest.fixture(scope="module")
def two_bundles(tmp_path_factory: pytest.TempPathFactory, tiny_pack_master: Path, tiny_model_dir: Path) -> Path:
    """One pack signed twice by the same vendor (two bundles), checked against the first: results.json."""
    root = tmp_path_factory.mktemp("bom-binding")
    shutil.copytree(tiny_pack_master, root / "pack")
    key, pub, _ = write_keypair(root / "vendor")
    for name in ("first", "second"):
        signed = run_cli(GROUP, "sign", root / "pack", "--key", key, "--baseline", tiny_model_dir, "--seq-len", "16",
                         "--max-windows", "2", "-o", root / f"{name}.sigstore.json", "--quiet")  # fmt: skip
        assert signed.rc == 0, signed.err
    checked = run_cli(GROUP, "check", root / "pack", "--bundle", root / "first.sigstore.json", "--key", pub,
                      "--json", root / "results.json", "--quiet")  # fmt: skip
    assert checked.rc == 0, checked.out + checked.err
    return root


def _bom(root: Path, bundle: str) -> tuple[int, str, Path]:
    out = root / f"{bundle}.cdx.json"
    result = run_cli(GROUP, "bom", root / f"{bundle}.sigstore.json", "--pack", root / "pack", "--key", root / "vendor.pub",
                     "--results", root / "results.json", "-o", out)  # fmt: skip
    return result.rc, result.out + result.err, out


def test_results_are_accepted_only_with_the_bundle_they_were_made_for(two_bundles: Path) -> None:
    first = json.loads((two_bundles / "results.json").read_text())
    assert first["digests"]["bundle_sha256"] != ""
    rc, out, written = _bom(two_bundles, "first")
    assert rc == 0, out
    assert "customer re-measurement" in written.read_text()
    rc, out, written = _bom(two_bundles, "second")  # same pack, same vendor, another bundle
    assert rc == 1 and "another vendor bundle" in out and len(out.strip().splitlines()) == 1
    assert not written.exists()
