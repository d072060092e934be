"""Strict pack reader.

Every file is read once into memory with O_NOFOLLOW; its hash and its use come
from those same bytes, so a file swapped between hashing and loading cannot slip
through. Nothing is unpickled: safetensors and JSON only.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError

from ..codec.reconstruct import TORCH_DTYPES, reconstruct, tensor_digest
from ..errors import UnreadableInputError, UsageError, VerificationError
from .manifest import MANIFEST_NAME, SUPPORTED_MAJOR, FileEntry, PackManifest, PassthroughStorage, QuantizedStorage, TensorEntry
from .paths import check_relative_path
from .safetensors_strict import SafetensorsFormatError, SafetensorsView, parse_safetensors
from .strict_json import loads_strict

MAX_MANIFEST_BYTES = 64 * 1024 * 1024


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()))
    return f"{where}: {err.get('msg')}" if where else str(err.get("msg"))


def read_regular_file(path: Path, limit: int | None = None) -> bytearray:
    """Read a whole regular file (never through a symlink) into memory; raise OSError otherwise."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path.name} is not a regular file")
        if limit is not None and st.st_size > limit:
            raise OSError(f"{path.name} is larger than {limit} bytes")
        buf = bytearray(st.st_size)
        view = memoryview(buf)
        got = 0
        while got < st.st_size:
            n = os.readv(fd, [view[got:]])
            if n == 0:
                break
            got += n
        if got != st.st_size or os.read(fd, 1):
            raise OSError(f"{path.name} changed size while being read")
        return buf
    finally:
        os.close(fd)


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
    except OSError as exc:
        raise UnreadableInputError(f"cannot read {MANIFEST_NAME}: {exc}") from exc
    # A directory with a ucpack.json is a pack; a manifest that does not parse or
    # validate is a tampered pack (exit 1), unless it declares a major version this
    # reader does not know (exit 2: not readable here, not necessarily tampered).
    try:
        raw = loads_strict(bytes(data), MANIFEST_NAME)
    except UnreadableInputError as exc:
        raise VerificationError(str(exc)) from exc
    if not isinstance(raw, dict) or raw.get("format") != "uc-pack":
        raise VerificationError(f"{MANIFEST_NAME} does not declare format 'uc-pack'")
    version = raw.get("format_version")
    if isinstance(version, str) and version.split(".")[0].isdigit() and int(version.split(".")[0]) != SUPPORTED_MAJOR:
        raise UnreadableInputError(f"unsupported pack format version {version} (this reader knows {SUPPORTED_MAJOR}.x)")
    try:
        manifest = PackManifest.model_validate(raw)
    except ValidationError as exc:
        raise VerificationError(f"{MANIFEST_NAME} is invalid: {_first_error(exc)}") from exc
    return Pack(root=root, manifest=manifest, manifest_bytes=bytes(data))


def read_pack_file(pack: Pack, entry: FileEntry) -> tuple[bytearray | None, list[str]]:
    """Read one listed file once and check size and SHA-256; return its bytes and any problems."""
    check_relative_path(entry.path)
    path = pack.root / entry.path
    try:
        data = read_regular_file(path)
    except FileNotFoundError:
        return None, [f"{entry.path}: missing"]
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


@dataclass
class DecodedTensor:
    """One tensor's outcome; ``entry`` is None for a problem with the shard as a whole."""

    entry: TensorEntry | None
    tensor: torch.Tensor | None
    problem: str | None


def _decode_one(view: SafetensorsView, entry: TensorEntry) -> torch.Tensor:
    storage = entry.storage
    if isinstance(storage, QuantizedStorage):
        assert entry.codec is not None
        for key in (storage.codes, storage.scales, storage.codebook):
            if key not in view.tensors:
                raise ValueError(f"codec tensor {key!r} is missing from {storage.file}")
        codes = view.tensor(storage.codes)
        scales = view.tensor(storage.scales)
        codebook = view.tensor(storage.codebook)
        if codes.dtype != torch.uint8 or codes.ndim != 1:
            raise ValueError("codes must be a flat uint8 tensor")
        if codebook.dtype != torch.float32 or codebook.ndim != 1:
            raise ValueError("codebook must be a flat float32 tensor")
        if not np.isfinite(codebook.numpy()).all():
            raise ValueError("codebook holds NaN or infinity")
        if scales.dtype == torch.float16 and not np.isfinite(scales.numpy()).all():
            raise ValueError("scales hold NaN or infinity")
        return reconstruct(codes.numpy(), codebook, scales, entry.shape, entry.codec)
    assert isinstance(storage, PassthroughStorage)
    if storage.key not in view.tensors:
        raise ValueError(f"tensor {storage.key!r} is missing from {storage.file}")
    tensor = view.tensor(storage.key)
    if tensor.dtype != TORCH_DTYPES[entry.dtype]:
        raise ValueError(f"stored dtype {tensor.dtype} differs from the manifest's {entry.dtype}")
    return tensor


def decode_shard(pack: Pack, file: FileEntry, data: bytearray) -> Iterator[DecodedTensor]:
    """Parse a shard strictly and yield every manifest tensor it stores, reconstructed and checked."""
    entries = pack.tensors_in(file.path)
    try:
        view = parse_safetensors(data, file.path)
    except SafetensorsFormatError as exc:
        yield DecodedTensor(None, None, str(exc))
        for entry in entries:
            yield DecodedTensor(entry, None, f"{entry.name}: its shard {file.path} is not readable")
        return
    referenced: set[str] = set()
    for entry in entries:
        st = entry.storage
        referenced.update((st.codes, st.scales, st.codebook) if isinstance(st, QuantizedStorage) else (st.key,))
    extra = sorted(set(view.tensors) - referenced)
    for entry in entries:
        try:
            tensor = _decode_one(view, entry)
        except (ValueError, RuntimeError) as exc:
            yield DecodedTensor(entry, None, f"{entry.name}: {exc}")
            continue
        if list(tensor.shape) != entry.shape:
            yield DecodedTensor(entry, None, f"{entry.name}: shape {list(tensor.shape)} differs from {entry.shape}")
            continue
        digest = tensor_digest(tensor)
        if digest != entry.digest:
            yield DecodedTensor(entry, tensor, f"{entry.name}: reconstruction digest {digest} differs from the manifest's")
            continue
        yield DecodedTensor(entry, tensor, None)
    if extra:
        yield DecodedTensor(None, None, f"{file.path}: holds tensors the manifest does not list: {', '.join(extra[:5])}")
