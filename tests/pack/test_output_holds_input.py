"""An output never holds an input: ``--force`` replaces only a previous output of the same command.

``uc export PACK -o DIR --force`` with DIR the directory that holds the pack
and the vendor key used to delete both and exit 0.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from support.cli import run_cli

from uc_attest._internal.attest.keys import write_keypair
from uc_attest._internal.cli.uc import uc_group
from uc_attest._internal.pack.export import EXPORT_MARKER, export_pack

pytestmark = pytest.mark.slow


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture()
def workspace(tiny_pack: Path, tmp_path: Path) -> Path:
    """tmp_path holding the pack and the vendor's key pair beside it."""
    write_keypair(tmp_path / "vendor")
    return tmp_path


@pytest.mark.parametrize("where", ["parent", "pack"])
def test_export_into_a_directory_holding_the_pack_is_refused_and_deletes_nothing(workspace: Path, where: str) -> None:
    before = _snapshot(workspace)
    out = workspace if where == "parent" else workspace / "pack"
    for force in ([], ["--force"]):
        result = run_cli(uc_group, "export", workspace / "pack", "-o", out, *force)
        assert result.rc == 2 and len(result.err.strip().splitlines()) == 1, result.err
        assert any(why in result.err for why in ("contains the input", "inside the pack"))
    assert _snapshot(workspace) == before
    assert not list(workspace.glob(".*.partial"))


def test_force_replaces_only_a_previous_export(workspace: Path, tmp_path: Path) -> None:
    pack = workspace / "pack"
    keys = tmp_path / "keys"
    keys.mkdir()
    shutil.copy(workspace / "vendor.key", keys / "vendor.key")
    refused = run_cli(uc_group, "export", pack, "-o", keys, "--force")
    assert refused.rc == 2 and "not one" in refused.err and (keys / "vendor.key").exists()

    served = tmp_path / "served"
    assert run_cli(uc_group, "export", pack, "-o", served, "--quiet").rc == 0
    marker = json.loads((served / EXPORT_MARKER).read_text())
    assert marker["format"] == "uc-export" and {f["path"] for f in marker["files"]} | {EXPORT_MARKER} == {p.name for p in served.iterdir()}
    again = run_cli(uc_group, "export", pack, "-o", served, "--force", "--quiet")
    assert again.rc == 0, again.err  # a previous export, recognisably one

    shutil.copy(workspace / "vendor.key", served / "vendor.key")  # someone keeps a file in the served directory
    kept = run_cli(uc_group, "export", pack, "-o", served, "--force")
    assert kept.rc == 2 and "vendor.key" in kept.err and (served / "vendor.key").exists()
    (served / "vendor.key").unlink()
    (served / EXPORT_MARKER).write_text('{"format": "uc-export"}')  # a marker that is not one
    forged = run_cli(uc_group, "export", pack, "-o", served, "--force")
    assert forged.rc == 2 and EXPORT_MARKER in forged.err and (served / "config.json").exists()


def test_export_marker_is_on_the_inert_allow_list(tiny_pack: Path, tmp_path: Path) -> None:
    from uc_attest._internal.pack.deployed import verify_deployed
    from uc_attest._internal.pack.reader import open_pack

    served = tmp_path / "served"
    export_pack(tiny_pack, served)
    report = verify_deployed(open_pack(tiny_pack), served)
    assert report.ok and {f.path: f.status for f in report.files}[EXPORT_MARKER] == "inert"


def test_compress_never_replaces_its_source_or_a_directory_that_is_not_a_pack(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "models" / "tiny"
    shutil.copytree(tiny_model_dir, model)
    before = _snapshot(tmp_path / "models")
    for out in (tmp_path / "models", model):
        result = run_cli(uc_group, "compress", model, "-o", out, "--method", "datafree", "--force", "--quiet")
        assert result.rc == 2 and "contains the input" in result.err, result.err
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    result = run_cli(uc_group, "compress", model, "-o", other, "--method", "datafree", "--force", "--quiet")
    assert result.rc == 2 and "not one" in result.err and (other / "notes.txt").read_text() == "keep me"
    assert _snapshot(tmp_path / "models") == before
