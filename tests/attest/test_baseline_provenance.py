"""Baseline provenance: the source's file digests are recorded at compress time and the baseline must match them.

The Hugging Face cache case: a snapshot directory whose every file is a
symlink into ``../../blobs`` used to be recorded as ``files: []`` and still
measured; now its files are followed (inside the cache entry) and hashed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from support.models import TEXT, build_tokenized_model  # noqa: E402
from support.cli import assert_one_line_error, run_cli  # noqa: E402
from support.delivery import compress, new_key  # noqa: E402

from uc_attest._internal.attest import KeyAnchor, verify_bundle  # noqa: E402
from uc_attest._internal.attest.keys import private_key_pem, public_key_pem  # noqa: E402
from uc_attest._internal.errors import UnreadableInputError  # noqa: E402
from uc_attest._internal.model_files import model_files  # noqa: E402
from uc_attest._internal.pack.reader import open_pack  # noqa: E402


def _as_hf_cache(model: Path, cache: Path) -> Path:
    """``cache/models--org--tiny/snapshots/REV/*`` symlinks into ``blobs/``, as huggingface_hub lays it out."""
    entry = cache / "models--org--tiny"
    blobs, snapshot = entry / "blobs", entry / "snapshots" / ("0" * 40)
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for f in sorted(model.iterdir()):
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        shutil.copyfile(f, blobs / digest)
        (snapshot / f.name).symlink_to(Path("../../blobs") / digest)
    return snapshot


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("provenance")
    model = build_tokenized_model(root / "model", seed=5)
    other = build_tokenized_model(root / "other", seed=6)
    snapshot = _as_hf_cache(model, root / "hub")
    pack = compress(snapshot, root / "pack")
    key = new_key()
    (root / "vendor.key").write_bytes(private_key_pem(key, None))
    (root / "vendor.key").chmod(0o600)
    (root / "vendor.pub").write_bytes(public_key_pem(key.public_key()))
    (root / "eval.txt").write_text(TEXT)
    return {"root": root, "model": model, "other": other, "snapshot": snapshot, "pack": pack}


def _sign(world: dict[str, Path], baseline: Path, out: Path, *extra: object) -> tuple[int, str]:
    rc, _out, err = run_cli("attest", "sign", world["pack"], "--key", world["root"] / "vendor.key", "--baseline", baseline,
                            "--eval-text", world["root"] / "eval.txt", "--seq-len", "24", "--max-windows", "2",
                            "-o", out, "--quiet", *extra)  # fmt: skip
    return rc, err


def test_compress_records_the_source_files_of_a_hub_cache_snapshot(world: dict[str, Path]) -> None:
    recorded = open_pack(world["pack"]).manifest.model.source.files
    expected = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in world["model"].iterdir()}
    assert {f.path: f.sha256 for f in recorded} == expected and len(recorded) >= 3
    assert any(f.path == "model.safetensors" for f in recorded)


def test_sign_with_the_matching_baseline_records_the_match(world: dict[str, Path], tmp_path: Path) -> None:
    bundle = tmp_path / "b.sigstore.json"
    rc, err = _sign(world, world["model"], bundle)  # a copy outside the cache with the same bytes matches
    assert rc == 0, err
    baseline = verify_bundle(bundle, KeyAnchor(world["root"] / "vendor.pub")).predicate.measurement.baseline
    assert baseline is not None and baseline.model.matches_pack_source is True and baseline.model.source_override is None
    assert len(baseline.model.files) == len(open_pack(world["pack"]).manifest.model.source.files)


def test_sign_refuses_a_different_baseline_unless_overridden_and_signs_the_override(world: dict[str, Path], tmp_path: Path) -> None:
    bundle = tmp_path / "b.sigstore.json"
    rc, err = _sign(world, world["other"], bundle)
    assert_one_line_error(rc, err, (1,))
    assert "not the model the pack was compressed from" in err and "model.safetensors: SHA-256 differs" in err
    assert not bundle.exists()
    rc, err = _sign(world, world["other"], bundle, "--baseline-mismatch-reason", "original weights re-downloaded")
    assert rc == 0, err
    baseline = verify_bundle(bundle, KeyAnchor(world["root"] / "vendor.pub")).predicate.measurement.baseline
    assert baseline is not None and baseline.model.matches_pack_source is False
    assert baseline.model.source_override == "original weights re-downloaded"


def test_a_forged_predicate_claiming_a_mismatch_without_reason_or_empty_files_is_refused() -> None:
    from pydantic import ValidationError

    from uc_attest._internal.attest.predicate import BaselineModelInfo, FileDigest

    one = [FileDigest(path="a", sha256="0" * 64)]
    with pytest.raises(ValidationError, match="sourceOverride"):
        BaselineModelInfo(name="m", files=one, matches_pack_source=False)
    with pytest.raises(ValidationError):
        BaselineModelInfo(name="m", files=[], matches_pack_source=True)
    with pytest.raises(ValidationError, match="only for a baseline that differs"):
        BaselineModelInfo(name="m", files=one, matches_pack_source=True, source_override="x")


def test_symlinks_leaving_the_cache_entry_are_refused(world: dict[str, Path], tmp_path: Path) -> None:
    model = tmp_path / "m"
    shutil.copytree(world["model"], model)
    (model / "extra.json").symlink_to(world["other"] / "config.json")
    with pytest.raises(UnreadableInputError, match="outside"):
        model_files(model)
    rc, err = _sign(world, model, tmp_path / "b.json")
    assert_one_line_error(rc, err, (2,))
    rc, _out, err = run_cli("uc", "compress", model, "-o", tmp_path / "p", "--method", "datafree")
    assert_one_line_error(rc, err, (2,))


def test_hidden_files_count_and_an_empty_directory_is_refused(world: dict[str, Path], tmp_path: Path) -> None:
    model = tmp_path / "m"
    shutil.copytree(world["model"], model)
    (model / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    assert ".gitattributes" in {f.path for f in model_files(model)}
    rc, err = _sign(world, model, tmp_path / "b.json")
    assert_one_line_error(rc, err, (1,))
    assert ".gitattributes: not in the compressed source" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    from uc_attest._internal.attest.provenance import baseline_provenance
    from uc_attest._internal.errors import UsageError

    with pytest.raises(UsageError, match="no files"):
        baseline_provenance(empty, open_pack(world["pack"]).manifest.model.source.files, None)
    assert json.loads((world["pack"] / "ucpack.json").read_bytes())["model"]["source"]["files"]
