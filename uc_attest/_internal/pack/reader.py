"""Strict pack reader.

Every file is read once into memory with O_NOFOLLOW; its hash and its use come
from those same bytes, so a file swapped between hashing and loading cannot slip
through. Nothing is unpickled: safetensors and JSON only.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from ..errors import UnreadableInputError, UsageError, VerificationError
from ..safe_io import FileSizeMismatchError, NotRegularFileError, read_regular_file
from .manifest import MANIFEST_NAME, SUPPORTED_MAJOR, FileEntry, PackManifest, TensorEntry
from .paths import check_relative_path
from .strict_json import first_validation_error, loads_strict_as

MAX_MANIFEST_BYTES = 64 * 1024 * 1024


@dataclass
class Pack:
    """An opened pack: its root and its parsed, validated manifest."""

    root: Path
    manifest: PackManifest
    manifest_bytes: bytes
    manifest_sha256: str = field(init=False)

    def __post_init__(self) -> None:
        self.manifest_sha256 = hashlib.sha256(self.manifest_bytes).hexdigest()

    def tensors_in(self, file: str) -> list[TensorEntry]:
        return [t for t in self.manifest.tensors if t.storage.file == file]


def open_pack(path: str | os.PathLike[str]) -> Pack:
    """Open and validate a pack's manifest; raise a one-line, typed error if it is not a pack."""
    root = Path(path)
    if not root.exists() and not root.is_symlink():
        raise UsageError(f"no such pack: {root}")
    if root.is_symlink():
        raise UnreadableInputError(f"{root} is a symlink; give the pack directory itself")
    if not root.is_dir():
        raise UnreadableInputError(f"not a pack: {root} is not a directory")
    mpath = root / MANIFEST_NAME
    if mpath.is_symlink():
        raise VerificationError(f"{MANIFEST_NAME} is a symlink")
    if not mpath.exists():
        raise UnreadableInputError(f"not a pack: {root} has no {MANIFEST_NAME}")
    try:
        data = read_regular_file(mpath, MAX_MANIFEST_BYTES)
    except NotRegularFileError as exc:  # a FIFO or device in the pack: tampered, refused without blocking
        raise VerificationError(f"{MANIFEST_NAME}: {exc.strerror}") from exc
    except OSError as exc:
        raise UnreadableInputError(f"cannot read {MANIFEST_NAME}: {exc}") from exc
    # A directory with a ucpack.json is a pack; a manifest that does not parse or
    # validate is a tampered pack (exit 1), unless it declares a major version this
    # reader does not know (exit 2: not readable here, not necessarily tampered).
    raw = loads_strict_as(bytes(data), MANIFEST_NAME, VerificationError)
    if not isinstance(raw, dict) or raw.get("format") != "uc-pack":
        raise VerificationError(f"{MANIFEST_NAME} does not declare format 'uc-pack'")
    version = raw.get("format_version")
    if isinstance(version, str) and version.split(".")[0].isdigit() and int(version.split(".")[0]) != SUPPORTED_MAJOR:
        raise UnreadableInputError(f"unsupported pack format version {version} (this reader knows {SUPPORTED_MAJOR}.x)")
    try:
        manifest = PackManifest.model_validate(raw)
    except ValidationError as exc:
        raise VerificationError(f"{MANIFEST_NAME} is invalid: {first_validation_error(exc)}") from exc
    return Pack(root=root, manifest=manifest, manifest_bytes=bytes(data))


def read_pack_file(pack: Pack, entry: FileEntry) -> tuple[bytearray | None, list[str]]:
    """Read one listed file once and check size and SHA-256; return its bytes and any problems."""
    check_relative_path(entry.path)
    path = pack.root / entry.path
    try:
        # the size is compared with the manifest's before a byte is read: memory follows the signed sizes
        data = read_regular_file(path, expected_size=entry.size)
    except FileNotFoundError:
        return None, [f"{entry.path}: missing"]
    except FileSizeMismatchError as exc:
        return None, [f"{entry.path}: size {exc.actual} differs from the manifest's {entry.size}"]
    except NotRegularFileError as exc:
        return None, [f"{entry.path}: {exc.strerror}"]
    except OSError as exc:
        reason = "is a symlink" if path.is_symlink() else (exc.strerror or str(exc))
        return None, [f"{entry.path}: {reason}"]
    problems = []
    if len(data) != entry.size:
        problems.append(f"{entry.path}: size {len(data)} differs from the manifest's {entry.size}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.sha256:
        problems.append(f"{entry.path}: SHA-256 {digest} differs from the manifest's {entry.sha256}")
    return data, problems
