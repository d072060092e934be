"""Reproducible compression: the same source and options give the same pack bytes; ``uc compress --reproduce`` proves it."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from support.calibration import fast_options
from support.cli import run_cli
from support.models import make_tiny_model
from support.pack_edit import copy_with_a_flipped_shard_byte
from uc_attest._internal.compress.pipeline import compress_model
from uc_attest._internal.pack.manifest import MANIFEST_NAME
from uc_attest._internal.pack.reader import open_pack
from uc_attest._internal.pack.verify import verify_pack

pytestmark = pytest.mark.slow  # calibrated compressions, several per test


def _digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A tiny model and two packs of it, compressed with --target-bpw (sensitivity, allocation, GPTQ, tuning) twice."""
    root = tmp_path_factory.mktemp("reproduce")
    model_dir = make_tiny_model("llama", root / "model")
    options = fast_options(root, target_bpw=5.3, tune_epochs=1, threads=2)
    compress_model(model_dir, root / "one", options, progress=False)
    compress_model(model_dir, root / "two", options, progress=False)
    return model_dir, root / "one", root / "two"


def test_two_runs_give_identical_bytes(built: tuple[Path, Path, Path]) -> None:
    _model, one, two = built
    assert _digests(one) == _digests(two)
    manifest = open_pack(one).manifest
    recipe = manifest.compression.rebuild
    assert recipe is not None and recipe.threads == 2
    assert recipe.options["target_bpw"] == 5.3 and recipe.options["bits_for"] == {}  # as given, before the allocation
    assert {"uc_attest", "torch", "transformers", "numpy"} <= set(recipe.software)
    assert recipe.machine["device"] == "cpu"
    assert not any(k.endswith("_seconds") for k in manifest.compression.calibration)


def test_reproduce_passes_on_the_same_source(built: tuple[Path, Path, Path]) -> None:
    model_dir, one, _two = built
    done = run_cli("uc", "compress", str(model_dir), "--reproduce", str(one), "--quiet")
    assert done.rc == 0, done.out + done.err
    assert done.out.rstrip().endswith("REPRODUCE: PASS")
    sha = hashlib.sha256((one / MANIFEST_NAME).read_bytes()).hexdigest()
    assert f"rebuilt manifest  sha256:{sha}" in done.out


def test_reproduce_fails_on_a_tampered_source(built: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """Forgery: the pack claims a source it was not built from; one weight of the source changed."""
    model_dir, one, _two = built
    source = tmp_path / "model"
    shutil.copytree(model_dir, source)
    weights = source / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-2] ^= 0x01
    weights.write_bytes(bytes(data))
    done = run_cli("uc", "compress", str(source), "--reproduce", str(one), "--quiet")
    assert done.rc == 1 and "REPRODUCE: FAIL" in done.out and "model.safetensors" in done.out


def test_reproduce_fails_on_a_pack_file_that_differs_from_the_rebuild(built: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """Forgery: the manifest is the genuine one, a shard's byte is not (and a file was slipped in)."""
    model_dir, one, _two = built
    pack = tmp_path / "pack"
    shard = copy_with_a_flipped_shard_byte(one, pack)
    (pack / "extra.bin").write_bytes(b"x")
    done = run_cli("uc", "compress", str(model_dir), "--reproduce", str(pack), "--quiet")
    assert done.rc == 1 and "REPRODUCE: FAIL" in done.out
    assert f"{shard.name}: differs" in done.out and "extra.bin: in the pack, not written by the rebuild" in done.out


def test_reproduce_fails_when_the_recorded_options_were_edited(built: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """Forgery: a manifest whose recipe was edited (seed) no longer matches what its own options rebuild."""
    model_dir, one, _two = built
    pack = tmp_path / "pack"
    shutil.copytree(one, pack)
    manifest = json.loads((pack / MANIFEST_NAME).read_text())
    manifest["compression"]["rebuild"]["options"]["seed"] = 1
    (pack / MANIFEST_NAME).write_text(json.dumps(manifest))
    done = run_cli("uc", "compress", str(model_dir), "--reproduce", str(pack), "--quiet")
    assert done.rc == 1 and "the rebuilt manifest's SHA-256" in done.out


def test_a_pack_without_a_recipe_still_verifies_and_reproduce_says_why_not(built: tuple[Path, Path, Path], tmp_path: Path) -> None:
    model_dir, one, _two = built
    pack = tmp_path / "old"
    shutil.copytree(one, pack)
    manifest = json.loads((pack / MANIFEST_NAME).read_text())
    del manifest["compression"]["rebuild"]  # as packs made before reproducible builds are
    (pack / MANIFEST_NAME).write_text(json.dumps(manifest))
    assert verify_pack(pack, progress=False).report.ok
    done = run_cli("uc", "compress", str(model_dir), "--reproduce", str(pack), "--quiet")
    assert done.rc == 2 and "no rebuild recipe" in done.err and "Traceback" not in done.err


def test_reproduce_refuses_other_options(built: tuple[Path, Path, Path]) -> None:
    model_dir, one, _two = built
    done = run_cli("uc", "compress", str(model_dir), "--reproduce", str(one), "--bits", "4")
    assert done.rc == 2 and "bits" in done.err
    done = run_cli("uc", "compress", str(model_dir))
    assert done.rc == 2 and "--output" in done.err
