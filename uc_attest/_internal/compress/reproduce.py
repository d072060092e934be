"""``uc compress MODEL_DIR --reproduce PACK``: rebuild a pack from its recorded recipe and compare every byte.

PASS means: the source directory's files are the ones the manifest records,
the rebuild from the recorded options wrote a manifest with the same SHA-256,
and every file of PACK (a closed set: the rebuild's files, nothing more,
nothing less) has the same SHA-256 as the rebuild's. Anything else is FAIL,
with the reason. What PASS does not cover, it says: that the recorded
software and machine class are the ones at hand is reported, not required
(a rebuild elsewhere may still match, and then the bytes speak for
themselves).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UnreadableInputError, UsageError, more_than_shown
from ..model_files import model_files
from ..pack.manifest import MANIFEST_NAME
from ..pack.reader import open_pack
from ..safe_io import sha256_regular_file
from .options import CompressOptions
from .recipe import machine_class, software_versions


@dataclass
class Reproduction:
    """The verdict of a rebuild and what it rests on."""

    passed: bool
    pack_manifest_sha256: str
    rebuilt_manifest_sha256: str | None = None
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _pack_files(root: Path) -> dict[str, str]:
    """Every regular file under ``root`` by relative path, with its SHA-256; anything else (a symlink, a FIFO) is refused."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in sorted(dirnames):
            if (Path(dirpath) / name).is_symlink():
                raise UnreadableInputError(f"{Path(dirpath) / name}: a symlink inside the pack")
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_symlink():
                raise UnreadableInputError(f"{path}: a symlink inside the pack")
            out[path.relative_to(root).as_posix()] = sha256_regular_file(path, follow_symlinks=False)[1]
    return out


def reproduce_pack(model_dir: Path, pack: Path, calibration_file: Path | None = None, progress: bool = True) -> Reproduction:
    """Rebuild ``pack`` from ``model_dir`` with the options its manifest records, in a temporary directory, and compare."""
    from .pipeline import compress_model

    opened = open_pack(pack)
    manifest = opened.manifest
    recipe = manifest.compression.rebuild
    if recipe is None:
        raise UsageError(f"{pack}: made before reproducible builds (its manifest has no rebuild recipe); nothing to rebuild from")
    try:
        options = CompressOptions.model_validate(recipe.options | {"threads": recipe.threads})
    except ValueError as exc:
        raise UsageError(f"{pack}: the recorded options are not ones this uc compress accepts: {exc}") from exc
    if calibration_file is not None:
        options = options.model_copy(update={"calibration_file": calibration_file})
    if options.calibration_file is not None and not Path(options.calibration_file).is_file():
        raise UsageError(f"the pack was calibrated on {options.calibration_file}, which is not here: give it with --calibration FILE")
    if options.device.startswith("cuda"):
        from ..evaluate.measure import resolve_device

        resolve_device(options.device)  # a CUDA device that is not here: a usage error, not a FAIL
    result = Reproduction(passed=False, pack_manifest_sha256=opened.manifest_sha256)
    for name, recorded, here in (("software", recipe.software, software_versions()), ("machine", recipe.machine, machine_class(options.device))):
        for key in sorted(set(recorded) | set(here)):
            if recorded.get(key) != here.get(key):
                result.notes.append(f"{name} {key}: recorded {recorded.get(key, '-')}, here {here.get(key, '-')} (the bytes may differ)")
    source = model_files(model_dir)
    if manifest.model.source.files and source != manifest.model.source.files:
        recorded_files = {f.path: f.sha256 for f in manifest.model.source.files}
        present = {f.path: f.sha256 for f in source}
        differing = sorted(p for p in set(recorded_files) | set(present) if recorded_files.get(p) != present.get(p))
        result.failures.append(f"the source differs from the one recorded: {', '.join(differing[:5])}{more_than_shown(len(differing), 5)}")
        return result
    given = _pack_files(pack)
    with tempfile.TemporaryDirectory(prefix=".uc-reproduce-", dir=pack.resolve().parent) as tmp:
        rebuilt = Path(tmp) / "pack"
        compress_model(model_dir, rebuilt, options, progress=progress, source_name=manifest.model.source.name)
        result.rebuilt_manifest_sha256 = hashlib.sha256((rebuilt / MANIFEST_NAME).read_bytes()).hexdigest()
        made = _pack_files(rebuilt)
    if result.rebuilt_manifest_sha256 != opened.manifest_sha256:
        result.failures.append(f"the rebuilt manifest's SHA-256 is {result.rebuilt_manifest_sha256}, the pack's {opened.manifest_sha256}")
    for path in sorted(set(given) | set(made)):
        if path not in made:
            result.failures.append(f"{path}: in the pack, not written by the rebuild")
        elif path not in given:
            result.failures.append(f"{path}: written by the rebuild, missing from the pack")
        elif given[path] != made[path]:
            result.failures.append(f"{path}: differs from the rebuild's")
    result.passed = not result.failures
    return result
