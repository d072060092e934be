"""``--deployed DIR``: is the model directory a serving engine loads the pack's model?

A serving engine (vLLM, TGI, transformers) loads an ordinary Hugging Face
directory, not the pack. This check reads every safetensors file of that
directory once, front to back, in whatever sharding and order it comes, and
hashes each tensor slot as it passes with the same digest the manifest
records (domain, dtype, shape, little-endian bytes). A tensor stored in the
manifest's dtype and shape therefore matches exactly when its bytes are the
canonical reconstruction (or, for a passthrough tensor, the stored bytes).

Files, by kind:
  * ``*.safetensors``: every tensor must be one of the manifest's, once, with
    its digest; every manifest tensor must appear. Each differing, missing,
    duplicated or extra tensor is named.
  * the pack's config and tokenizer files must be present and equal: the same
    bytes, or, for JSON files a library rewrote (``save_pretrained``), the same
    JSON value once the one key that only records the writer's version
    (``transformers_version``) is set aside. The report says which rule held.
  * weights in any format this check cannot read (``.bin``, ``.pt``, ``.gguf``
    ...) fail it: an engine might load them instead.
  * anything else (``model.safetensors.index.json``, a README) is listed as
    not attested; an index only locates tensors, which are checked where they are.

Memory: one read buffer, whatever the model's size.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from ..codec.canonical import digest_header
from ..errors import UnreadableInputError, UsageError
from ..safe_io import open_regular_fd, read_regular_file
from .reader import Pack, read_pack_file
from .safetensors_strict import SafetensorsFormatError, parse_header, read_header_length
from .stream_verify import CHUNK_BYTES, SAFETENSORS_DTYPE
from .strict_json import loads_strict

UNCHECKABLE_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".gguf", ".ggml", ".h5", ".msgpack", ".npz", ".onnx", ".pkl", ".pickle")
VERSION_ONLY_KEYS = frozenset({"transformers_version"})
MAX_SIDE_FILE_BYTES = 256 << 20
_PASSING = ("tensors-checked", "identical", "equal-json", "not-attested")

TensorStatus = Literal["differs", "missing", "extra", "duplicate"]
FileStatus = Literal["tensors-checked", "identical", "equal-json", "differs", "missing", "unreadable", "uncheckable-weights", "not-attested"]


class DeployedTensorFinding(BaseModel):
    name: str
    status: TensorStatus
    file: str | None = None
    detail: str


class DeployedFile(BaseModel):
    path: str
    kind: Literal["weights", "config-or-tokenizer", "other"]
    status: FileStatus
    detail: str = ""


class DeployedReport(BaseModel):
    """The outcome of ``--deployed``: counts, every finding by name, and every file with its status."""

    directory: str
    ok: bool
    tensors_expected: int
    tensors_matching: int
    findings: list[DeployedTensorFinding]
    files: list[DeployedFile]
    bytes_read: int
    seconds: float

    @property
    def side_files_equal(self) -> bool:
        """Every config and tokenizer file of the pack is present and equal (shards and unattested files aside)."""
        return all(f.status in ("identical", "equal-json") for f in self.files if f.kind == "config-or-tokenizer")

    @property
    def failures(self) -> list[str]:
        out = [f"{t.name}: {t.detail}" for t in self.findings]
        out += [f"{f.path}: {f.detail or f.status}" for f in self.files if f.status not in _PASSING]
        return out


class _TensorTally:
    def __init__(self, pack: Pack) -> None:
        self.expected = {t.name: t for t in pack.manifest.tensors}
        self.seen: dict[str, str] = {}  # name -> file holding its first copy
        self.findings: list[DeployedTensorFinding] = []
        self.matching = 0

    def finding(self, name: str, status: TensorStatus, file: str | None, detail: str) -> None:
        self.findings.append(DeployedTensorFinding(name=name, status=status, file=file, detail=detail))


def _hash_slot(fd: int, nbytes: int, into: list[Any], buffer: bytearray) -> int:
    """Read ``nbytes`` once, feeding each hash in ``into``; the bytes actually read."""
    view = memoryview(buffer)
    left = nbytes
    while left:
        got = os.readv(fd, [view[: min(left, len(buffer))]])
        if not got:
            break
        chunk = view[:got]
        for h in into:
            h.update(chunk)
        left -= got
    return nbytes - left


def _read_exact(fd: int, n: int) -> bytes:
    """``n`` bytes, fewer only at the end of the file (then the header parser refuses them)."""
    parts, left = [], n
    while left and (chunk := os.read(fd, min(left, CHUNK_BYTES))):
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _check_shard(path: Path, tally: _TensorTally, buffer: bytearray) -> tuple[int, str | None]:
    """Stream one safetensors file through the tensor digests; bytes read and a problem with the file, if any."""
    try:
        fd, st = open_regular_fd(path, follow_symlinks=False)  # never blocks on a FIFO, refuses symlinks and devices
    except OSError as exc:
        return 0, str(exc.strerror or exc)
    try:
        try:
            header_len = read_header_length(_read_exact(fd, 8), st.st_size, path.name)
            slots, _ = parse_header(_read_exact(fd, header_len), st.st_size, path.name)
        except SafetensorsFormatError as exc:
            return 0, str(exc)
        read = 8 + header_len
        for slot in slots:
            nbytes = slot.end - slot.start
            entry = tally.expected.get(slot.name)
            if entry is None:
                tally.finding(slot.name, "extra", path.name, f"in {path.name} but not a tensor of the pack")
                read += _hash_slot(fd, nbytes, [], buffer)
                continue
            if slot.name in tally.seen:
                tally.finding(slot.name, "duplicate", path.name, f"stored again in {path.name} (first in {tally.seen[slot.name]})")
                read += _hash_slot(fd, nbytes, [], buffer)
                continue
            tally.seen[slot.name] = path.name
            if slot.dtype != SAFETENSORS_DTYPE[entry.dtype] or list(slot.shape) != entry.shape:
                tally.finding(slot.name, "differs", path.name,
                              f"stored as {slot.dtype}{list(slot.shape)} in {path.name}, attested {entry.dtype}{entry.shape}")  # fmt: skip
                read += _hash_slot(fd, nbytes, [], buffer)
                continue
            digest = hashlib.sha256(digest_header(entry.dtype, entry.shape))
            got = _hash_slot(fd, nbytes, [digest], buffer)
            read += got
            if got != nbytes:
                tally.finding(slot.name, "differs", path.name, f"truncated in {path.name}")
            elif "sha256:" + digest.hexdigest() != entry.digest:
                tally.finding(slot.name, "differs", path.name, f"its bytes in {path.name} do not rebuild to the attested digest")
            else:
                tally.matching += 1
        return read, None
    finally:
        os.close(fd)


def _json_equal_apart_from_version(a: bytes, b: bytes, name: str) -> bool:
    try:
        left, right = loads_strict(a, name), loads_strict(b, name)
    except UnreadableInputError:
        return False
    if isinstance(left, dict) and isinstance(right, dict):
        left = {k: v for k, v in left.items() if k not in VERSION_ONLY_KEYS}
        right = {k: v for k, v in right.items() if k not in VERSION_ONLY_KEYS}
    return left == right


def _check_side_file(pack: Pack, directory: Path, path: str) -> DeployedFile:
    """A config or tokenizer file of the pack against the deployed directory's copy."""
    entry = pack.manifest.file(path)
    attested, problems = read_pack_file(pack, entry)
    if problems or attested is None:
        return DeployedFile(path=path, kind="config-or-tokenizer", status="unreadable", detail=f"the pack's own copy fails: {problems[0] if problems else 'unreadable'}")
    target = directory / path
    if not target.exists() and not target.is_symlink():
        return DeployedFile(path=path, kind="config-or-tokenizer", status="missing", detail="the pack has it, the deployed directory does not")
    try:
        deployed = read_regular_file(target, MAX_SIDE_FILE_BYTES)
    except OSError as exc:
        return DeployedFile(path=path, kind="config-or-tokenizer", status="unreadable", detail="is a symlink" if target.is_symlink() else str(exc))
    if deployed == attested:
        return DeployedFile(path=path, kind="config-or-tokenizer", status="identical")
    if path.endswith(".json") and _json_equal_apart_from_version(bytes(attested), bytes(deployed), path):
        return DeployedFile(path=path, kind="config-or-tokenizer", status="equal-json", detail="same JSON value, other bytes (only transformers_version may differ)")
    return DeployedFile(path=path, kind="config-or-tokenizer", status="differs", detail="differs from the pack's attested copy")


def verify_deployed(pack: Pack, directory: str | os.PathLike[str]) -> DeployedReport:
    """Check a deployed model directory against the pack (see the module docstring)."""
    started = time.perf_counter()
    root = Path(directory)
    if root.is_symlink() or not root.is_dir():
        raise UsageError(f"no such model directory: {root}" if not root.exists() else f"{root} is not a directory (or is a symlink)")
    tally = _TensorTally(pack)
    side = {f.path for f in pack.manifest.files if f.role not in ("codec", "passthrough")}
    files: list[DeployedFile] = []
    buffer = bytearray(CHUNK_BYTES)
    bytes_read = 0
    for path in sorted(root.iterdir()):
        name = path.name
        if name in side:
            continue
        if name.endswith(".safetensors"):
            got, problem = _check_shard(path, tally, buffer)
            bytes_read += got
            files.append(DeployedFile(path=name, kind="weights", status="unreadable", detail=problem) if problem else DeployedFile(path=name, kind="weights", status="tensors-checked"))
        elif name.lower().endswith(UNCHECKABLE_WEIGHT_SUFFIXES):
            files.append(DeployedFile(path=name, kind="weights", status="uncheckable-weights", detail="weights in a format this check cannot read; an engine might load them"))
        else:
            files.append(DeployedFile(path=name, kind="other", status="not-attested", detail="not part of the pack; not checked"))
    for name in sorted(side):
        files.append(_check_side_file(pack, root, name))
    for name in tally.expected:
        if name not in tally.seen:
            tally.finding(name, "missing", None, "attested tensor not found in any safetensors file of the directory")
    ok = not tally.findings and all(f.status in _PASSING for f in files)
    return DeployedReport(directory=str(root), ok=ok, tensors_expected=len(tally.expected), tensors_matching=tally.matching,
                          findings=tally.findings, files=files, bytes_read=bytes_read,
                          seconds=time.perf_counter() - started)  # fmt: skip
