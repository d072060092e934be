"""``uc export``: a pack as an ordinary Hugging Face model directory that serving engines load.

The output holds the pack's config and tokenizer files (copied byte for byte)
and safetensors shards of every tensor as the customer's check rebuilds it: a
quantized tensor as its canonical reconstruction (the reconstruction dtype of
the pack, bf16 for the demo), a passthrough tensor as stored. Each tensor's
bytes are hashed as they are written and compared with the manifest's digest,
so a finished export is, tensor for tensor, the manifest's model; which
manifest was signed is ``attest check``'s question (docs/DEPLOY.md).

Memory stays bounded: the output's shard layout comes from the manifest alone
(every shape and dtype is known before a byte is read), so each output file is
written header first and then tensor by tensor, and a quantized tensor is
rebuilt a group of rows at a time (as in ``uc verify``). Nothing appears at the
output path until everything is written (:func:`atomic_directory`).

The output never holds an input: a directory that is or contains the pack is
refused, and ``--force`` replaces only a previous export, recognised by the
marker :data:`EXPORT_MARKER` it writes (what it wrote, file by file) and
holding nothing else, so that a pack or a key beside it is never deleted.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from ..atomic import atomic_directory, refuse_output_holding_inputs
from ..codec.canonical import digest_header, little_endian_bytes, reconstruct_array
from ..errors import UcError, UsageError, VerificationError
from ..safe_io import open_regular_fd, read_regular_file
from .manifest import PassthroughStorage, QuantizedStorage, TensorEntry
from .reader import Pack, open_pack, read_pack_file
from .safetensors_strict import (
    SafetensorsFormatError,
    TensorSlot,
    parse_header,
    read_header_length,
)
from .stream_verify import SAFETENSORS_DTYPE, _rows_per_group
from .strict_json import loads_strict

DEFAULT_SHARD_BYTES = 2 << 30
DTYPE_BYTES = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
COPY_CHUNK = 8 << 20
SINGLE_SHARD_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
EXPORT_MARKER = "uc-export.json"
MAX_MARKER_BYTES = 16 << 20


class ExportedFile(BaseModel):
    path: str
    size: int
    sha256: str
    tensors: int


class ExportReport(BaseModel):
    """What ``uc export`` wrote: every file with its SHA-256, and the pack it came from.

    The same object is written into the output as :data:`EXPORT_MARKER`, which is how ``--force`` recognises a
    previous export (and nothing else) as replaceable.
    """

    model_config = ConfigDict(extra="forbid")

    format: Literal["uc-export"] = "uc-export"
    pack_manifest_sha256: str
    files: list[ExportedFile]
    tensors: int
    tensor_bytes: int


def require_previous_export(target: Path) -> None:
    """``--force`` replaces only a previous ``uc export``: a real directory with its marker and only the files it lists."""
    refusal = f"--force replaces only a previous uc export, and {target} is not one"
    if target.is_symlink() or not target.is_dir():
        raise UsageError(f"{refusal}: not a directory")
    try:
        marker = ExportReport.model_validate(loads_strict(bytes(read_regular_file(target / EXPORT_MARKER, MAX_MARKER_BYTES)), EXPORT_MARKER))
    except (OSError, UcError, ValidationError):
        raise UsageError(f"{refusal} (no readable {EXPORT_MARKER}); remove it yourself or choose another output") from None
    listed = {f.path for f in marker.files} | {EXPORT_MARKER}
    others = sorted(entry.name for entry in os.scandir(target) if entry.name not in listed or entry.is_dir(follow_symlinks=False))
    if others:
        raise UsageError(f"{refusal}: it also holds {others[0]}, which the export did not write; remove it yourself or choose another output")


def tensor_nbytes(entry: TensorEntry) -> int:
    return math.prod(entry.shape) * DTYPE_BYTES[SAFETENSORS_DTYPE[entry.dtype]]


def plan_shards(entries: list[TensorEntry], max_bytes: int) -> list[list[TensorEntry]]:
    """Tensors in manifest order, cut into shards of at most ``max_bytes`` (a larger tensor gets one of its own)."""
    shards: list[list[TensorEntry]] = [[]]
    size = 0
    for entry in entries:
        nbytes = tensor_nbytes(entry)
        if shards[-1] and size + nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(entry)
        size += nbytes
    return [s for s in shards if s]


def shard_names(count: int) -> list[str]:
    """transformers' own naming, so that every loader recognises the layout."""
    if count == 1:
        return [SINGLE_SHARD_NAME]
    return [f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]


def safetensors_header(entries: list[TensorEntry], metadata: dict[str, str]) -> bytes:
    """The length-prefixed JSON header, padded with spaces to 8-byte alignment as safetensors writes it."""
    header: dict[str, object] = {"__metadata__": metadata}
    offset = 0
    for entry in entries:
        nbytes = tensor_nbytes(entry)
        header[entry.name] = {"dtype": SAFETENSORS_DTYPE[entry.dtype], "shape": entry.shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    body = json.dumps(header, separators=(",", ":")).encode()
    body += b" " * (-len(body) % 8)
    return len(body).to_bytes(8, "little") + body


@dataclass
class _SourceShard:
    """One pack shard opened for random reads: its descriptor and its parsed header."""

    fd: int
    slots: dict[str, TensorSlot]


@dataclass
class _PackReader:
    """Reads tensor slots out of the pack's shards by offset (headers parsed strictly once)."""

    pack: Pack
    open_shards: dict[str, _SourceShard] = field(default_factory=dict)

    def shard(self, name: str) -> _SourceShard:
        if name not in self.open_shards:
            try:
                fd, st = open_regular_fd(self.pack.root / name, follow_symlinks=False)
            except OSError as exc:
                raise VerificationError(f"{name}: {exc.strerror or exc}") from exc
            try:
                size = st.st_size
                header_len = read_header_length(os.pread(fd, 8, 0), size, name)
                slots, _ = parse_header(os.pread(fd, header_len, 8), size, name)
            except SafetensorsFormatError as exc:
                os.close(fd)
                raise VerificationError(str(exc)) from exc
            except BaseException:
                os.close(fd)
                raise
            self.open_shards[name] = _SourceShard(fd, {s.name: s for s in slots})
        return self.open_shards[name]

    def slot(self, file: str, key: str, tensor: str) -> tuple[int, TensorSlot]:
        shard = self.shard(file)
        if key not in shard.slots:
            raise VerificationError(f"{tensor}: {key!r} is missing from {file}")
        return shard.fd, shard.slots[key]

    def read(self, fd: int, start: int, n: int) -> bytes:
        data = os.pread(fd, n, start)
        while len(data) < n:
            more = os.pread(fd, n - len(data), start + len(data))
            if not more:
                raise VerificationError("a pack shard is shorter than its header says")
            data += more
        return data

    def close(self) -> None:
        for shard in self.open_shards.values():
            os.close(shard.fd)
        self.open_shards.clear()


def _small_array(reader: _PackReader, file: str, key: str, tensor: str, dtype: str, numpy_dtype: str) -> np.ndarray:
    fd, slot = reader.slot(file, key, tensor)
    if slot.dtype != dtype:
        raise VerificationError(f"{tensor}: {key!r} is stored as {slot.dtype}, expected {dtype}")
    return np.frombuffer(reader.read(fd, slot.start, slot.end - slot.start), dtype=numpy_dtype).reshape(slot.shape)


def tensor_chunks(reader: _PackReader, entry: TensorEntry) -> Iterator[bytes | memoryview]:
    """The tensor's little-endian bytes as the canonical rule rebuilds it, a group of rows at a time."""
    storage = entry.storage
    if isinstance(storage, PassthroughStorage):
        fd, slot = reader.slot(storage.file, storage.key, entry.name)
        if slot.dtype != SAFETENSORS_DTYPE[entry.dtype] or list(slot.shape) != entry.shape:
            raise VerificationError(f"{entry.name}: stored as {slot.dtype}{list(slot.shape)}, the manifest says {entry.dtype}{entry.shape}")
        for start in range(slot.start, slot.end, COPY_CHUNK):
            yield reader.read(fd, start, min(COPY_CHUNK, slot.end - start))
        return
    assert isinstance(storage, QuantizedStorage) and entry.codec is not None
    params = entry.codec
    codebook = _small_array(reader, storage.file, storage.codebook, entry.name, "F32", "<f4")
    scales = _small_array(reader, storage.file, storage.scales, entry.name, "F16", "<f2")
    fd, codes = reader.slot(storage.file, storage.codes, entry.name)
    count = math.prod(entry.shape)
    if codes.dtype != "U8" or codes.end - codes.start != (count * params.bits + 7) // 8:
        raise VerificationError(f"{entry.name}: packed codes do not fit the tensor")
    rows = entry.shape[0] if entry.shape else 1
    row = count // rows if rows else 0
    step = _rows_per_group(entry)
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        b0 = r0 * row * params.bits // 8
        b1 = codes.end - codes.start if r1 == rows else r1 * row * params.bits // 8
        packed = np.frombuffer(reader.read(fd, codes.start + b0, b1 - b0), dtype=np.uint8)
        sc = scales[r0 // params.block_size : -(-r1 // params.block_size)] if params.block_axis == 0 else scales[r0:r1]
        try:
            part = reconstruct_array(packed, codebook, sc, (r1 - r0, *entry.shape[1:]), params)
        except (ValueError, IndexError) as exc:
            raise VerificationError(f"{entry.name}: {exc}") from exc
        yield little_endian_bytes(part).data


def _write_shard(reader: _PackReader, path: Path, entries: list[TensorEntry], metadata: dict[str, str]) -> ExportedFile:
    """One output shard, header first, each tensor checked against its digest as it is written."""
    file_hash = hashlib.sha256()
    size = 0
    with open(path, "wb") as out:
        header = safetensors_header(entries, metadata)
        out.write(header)
        file_hash.update(header)
        size += len(header)
        for entry in entries:
            digest = hashlib.sha256(digest_header(entry.dtype, entry.shape))
            written = 0
            for chunk in tensor_chunks(reader, entry):
                digest.update(chunk)
                file_hash.update(chunk)
                out.write(chunk)
                written += len(chunk)
            if written != tensor_nbytes(entry):
                raise VerificationError(f"{entry.name}: rebuilt {written} bytes, expected {tensor_nbytes(entry)}")
            if "sha256:" + digest.hexdigest() != entry.digest:
                raise VerificationError(f"{entry.name}: the rebuilt tensor's digest differs from the manifest's; nothing exported")
            size += written
        out.flush()
        os.fsync(out.fileno())
    return ExportedFile(path=path.name, size=size, sha256=file_hash.hexdigest(), tensors=len(entries))


def _copy_model_files(pack: Pack, target: Path) -> list[ExportedFile]:
    """Config, generation config and tokenizer files, each checked against the manifest's SHA-256."""
    copied = []
    for entry in pack.manifest.files:
        if entry.role in ("codec", "passthrough"):
            continue
        data, problems = read_pack_file(pack, entry)
        if problems or data is None:
            raise VerificationError(problems[0] if problems else f"{entry.path}: unreadable")
        (target / entry.path).parent.mkdir(parents=True, exist_ok=True)
        (target / entry.path).write_bytes(data)
        copied.append(ExportedFile(path=entry.path, size=len(data), sha256=hashlib.sha256(data).hexdigest(), tensors=0))
    return copied


def export_pack(pack_path: str | os.PathLike[str], out: str | os.PathLike[str], *, max_shard_bytes: int = DEFAULT_SHARD_BYTES,
                overwrite: bool = False, progress: bool = False) -> ExportReport:  # fmt: skip
    """Write the pack at ``pack_path`` as a Hugging Face model directory at ``out`` (see the module docstring)."""
    pack = open_pack(pack_path)
    if max_shard_bytes < 1:
        raise UsageError("the shard size must be positive")
    if Path(out).resolve().is_relative_to(pack.root.resolve()):
        raise UsageError(f"{out} is inside the pack; export next to it")
    refuse_output_holding_inputs(Path(out), [pack.root])
    shards = plan_shards(pack.manifest.tensors, max_shard_bytes)
    names = shard_names(len(shards))
    metadata = {"format": "pt", "uc_attest_pack_manifest_sha256": pack.manifest_sha256}
    reader = _PackReader(pack)
    files: list[ExportedFile] = []
    try:
        with atomic_directory(out, overwrite=overwrite, inputs=[pack.root], replaceable=require_previous_export) as tmp:
            files += _copy_model_files(pack, tmp)
            bar = _progress(len(shards), progress)
            for name, entries in zip(names, shards, strict=True):
                files.append(_write_shard(reader, tmp / name, entries, metadata))
                bar.update(1)
            bar.close()
            if len(shards) > 1:
                files.append(_write_index(tmp, names, shards))
            report = ExportReport(pack_manifest_sha256=pack.manifest_sha256, files=files, tensors=len(pack.manifest.tensors),
                                  tensor_bytes=sum(tensor_nbytes(t) for t in pack.manifest.tensors))  # fmt: skip
            (tmp / EXPORT_MARKER).write_text(report.model_dump_json(indent=2) + "\n")
    finally:
        reader.close()
    return report


def _write_index(target: Path, names: list[str], shards: list[list[TensorEntry]]) -> ExportedFile:
    weight_map = {entry.name: name for name, entries in zip(names, shards, strict=True) for entry in entries}
    total = sum(tensor_nbytes(e) for entries in shards for e in entries)
    data = (json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n").encode()
    (target / INDEX_NAME).write_bytes(data)
    return ExportedFile(path=INDEX_NAME, size=len(data), sha256=hashlib.sha256(data).hexdigest(), tensors=0)


def _progress(total: int, enabled: bool):  # type: ignore[no-untyped-def]
    from tqdm import tqdm

    from ..progress import bar_disabled

    return tqdm(total=total, desc="export", unit="shard", disable=bar_disabled(enabled))
