"""``--deployed DIR``: is the model directory a serving engine loads exactly the pack's model?

A serving engine (vLLM, TGI, transformers) loads an ordinary Hugging Face
directory, not the pack, and it acts on more than the weights: the index says
which shard files to read, tokenizer side files and chat templates change what
the model is asked, a sub-directory can hold the weights an index points to.
So the directory is a CLOSED set: every entry under DIR, recursively, is one of

  * a tensor file (``*.safetensors`` at the top level): read once, front to
    back, each tensor slot hashed as it passes with the manifest's digest
    (domain, dtype, shape, little-endian bytes); every tensor must be one of
    the manifest's, once, and every manifest tensor must appear. Each
    differing, missing, duplicated or extra tensor is named;
  * a file of the pack (its config, generation config, tokenizer files, chat
    template: every pack file that is not a codec shard), byte-identical to
    the attested one. Every such pack file must be present;
  * the index ``model.safetensors.index.json``, parsed strictly: only
    ``weight_map`` and ``metadata`` (``total_size``, ``total_parameters``);
    it names exactly the set of checked shard files and maps every tensor to
    the file that holds it;
  * an inert file of :data:`INERT_FILES` (README, LICENSE, NOTICE,
    ``.gitattributes``, and ``uc-export.json``, the marker ``uc export``
    writes): no loader reads it.

Anything else fails and is named: a sub-directory and everything in it, a
symlink, a FIFO or device, weights this check cannot read (``.bin``,
``.gguf`` ...), and any other file (``chat_template.jinja``,
``added_tokens.json``, ``special_tokens_map.json``, ``generation_config.json``,
``tokenizer.model``, ``vocab.json``, ``preprocessor_config.json``, ``*.py``
...) that is not a file of the pack. What a vendor wants served belongs in
the pack, where the signature covers it (``uc compress`` copies the loader
files of :data:`uc_attest._internal.model_files.LOADER_FILES`; ``uc export`` writes them).

Which shard files a loader reads must not be ambiguous either: without an
index the only shard is ``model.safetensors``; with several shards there is an
index and no shard is called ``model.safetensors`` (transformers reads that
file alone when it exists, and the index not at all).

Memory: one read buffer, whatever the model's size.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from ..codec.canonical import digest_header
from ..digests import diff_files
from ..errors import UnreadableInputError, UsageError
from ..safe_io import open_regular_fd, read_regular_file, sha256_regular_file
from .export import EXPORT_MARKER, INDEX_NAME, SINGLE_SHARD_NAME
from .reader import Pack
from .safetensors_strict import SafetensorsFormatError, parse_header, read_header_length
from .stream_verify import CHUNK_BYTES, SAFETENSORS_DTYPE
from .strict_json import loads_strict

UNCHECKABLE_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".gguf", ".ggml", ".h5", ".msgpack", ".npz", ".onnx", ".pkl", ".pickle")
INERT_FILES = frozenset({"README", "README.md", "README.txt", "LICENSE", "LICENSE.md", "LICENSE.txt", "NOTICE", "NOTICE.md",
                         "NOTICE.txt", ".gitattributes", EXPORT_MARKER})  # fmt: skip
"""The allow-list of files no model loader reads (docs/DEPLOY.md), ``uc export``'s own marker among them; everything
else is evidence or a failure."""
INDEX_METADATA_KEYS = frozenset({"total_size", "total_parameters"})
MAX_INDEX_BYTES = 64 << 20
_PASSING = ("tensors-checked", "index-checked", "identical", "inert")

TensorStatus = Literal["differs", "missing", "extra", "duplicate"]
FileStatus = Literal["tensors-checked", "index-checked", "identical", "inert", "differs", "missing", "unreadable",
                     "uncheckable-weights", "unexpected", "index-invalid"]  # fmt: skip
FileKind = Literal["weights", "index", "pack-file", "inert", "other"]


class DeployedTensorFinding(BaseModel):
    name: str
    status: TensorStatus
    file: str | None = None
    detail: str


class DeployedFile(BaseModel):
    path: str
    kind: FileKind
    status: FileStatus
    detail: str = ""


class DeployedReport(BaseModel):
    """The outcome of ``--deployed``: counts, every finding by name, and every entry of the directory with its status."""

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
        """Every non-weight file of the pack is present and byte-identical (shards and other entries aside)."""
        return all(f.status == "identical" for f in self.files if f.kind == "pack-file")

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


def _unexpected(path: str, detail: str, kind: FileKind = "other") -> DeployedFile:
    return DeployedFile(path=path, kind=kind, status="unexpected", detail=detail)


def _entry_kind(path: Path) -> str:
    """``dir``, ``file``, ``symlink`` or ``special``, from ``lstat`` (never follows a link, never opens)."""
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "dir"
    return "file" if stat.S_ISREG(mode) else "special"


def _nested_entries(directory: Path, rel: str) -> list[DeployedFile]:
    """A sub-directory and everything in it, each named: loaders read files in sub-directories an index points to."""
    out = [_unexpected(rel + "/", "a sub-directory: not part of the attested model (an index or a loader may read files in it)")]
    try:
        children = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as exc:
        return out + [DeployedFile(path=rel + "/", kind="other", status="unreadable", detail=str(exc.strerror or exc))]
    for child in children:
        child_rel = f"{rel}/{child.name}"
        if child.is_dir(follow_symlinks=False):
            out += _nested_entries(Path(child.path), child_rel)
        else:
            out.append(_unexpected(child_rel, "inside a sub-directory: not part of the attested model"))
    return out


def _check_pack_files(root: Path, expected: Mapping[str, str], names: list[str]) -> list[DeployedFile]:
    """The pack's non-weight files against their attested SHA-256: present, byte-identical, nothing missing."""
    present: dict[str, str] = {}
    out: list[DeployedFile] = []
    for name in names:
        try:
            present[name] = sha256_regular_file(root / name, follow_symlinks=False)[1]
        except OSError as exc:  # a symlink, FIFO or device: refused, never read
            out.append(DeployedFile(path=name, kind="pack-file", status="unreadable", detail=str(exc.strerror or exc)))
    refused = {f.path for f in out}
    diff = diff_files({n: d for n, d in expected.items() if n not in refused}, present)
    for name in diff.missing:
        out.append(DeployedFile(path=name, kind="pack-file", status="missing", detail="the pack has it, the deployed directory does not"))
    for name in diff.differ:
        out.append(DeployedFile(path=name, kind="pack-file", status="differs", detail="differs from the pack's attested copy"))
    for name in sorted(set(present) - set(diff.differ)):
        out.append(DeployedFile(path=name, kind="pack-file", status="identical"))
    return out


def _index_problem(path: Path, shards: set[str], holder: Mapping[str, str]) -> str | None:
    """Why the index is not exactly the checked shards and the tensors they hold (None when it is)."""
    try:
        data = loads_strict(bytes(read_regular_file(path, MAX_INDEX_BYTES, follow_symlinks=False)), INDEX_NAME)
    except (OSError, UnreadableInputError) as exc:
        return str(getattr(exc, "strerror", None) or exc)
    if not isinstance(data, dict) or "weight_map" not in data or set(data) - {"weight_map", "metadata"}:
        return "not an index: an object of weight_map and metadata only"
    metadata, weight_map = data.get("metadata", {}), data["weight_map"]
    if not isinstance(metadata, dict) or set(metadata) - INDEX_METADATA_KEYS or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in metadata.values()
    ):
        return f"metadata may hold only {', '.join(sorted(INDEX_METADATA_KEYS))} (non-negative integers)"
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        return "weight_map is not an object of tensor name -> shard file"
    named = set(weight_map.values())
    if named - shards:
        return f"names {sorted(named - shards)[0]}, which is not a checked shard file of the directory"
    if shards - named:
        return f"does not name the shard {sorted(shards - named)[0]}: a loader would skip its tensors"
    for tensor, file in sorted(weight_map.items()):
        if holder.get(tensor) != file:
            where = f"held by {holder[tensor]}" if tensor in holder else "in no shard"
            return f"maps {tensor} to {file}, but it is {where}"
    unmapped = sorted(set(holder) - set(weight_map))
    if unmapped:
        return f"does not map {unmapped[0]}, held by {holder[unmapped[0]]}"
    return None


def _shard_layout_problem(shards: set[str], has_index: bool) -> str | None:
    """Which shard files a loader reads must not depend on the loader (see the module docstring)."""
    if not has_index and shards and shards != {SINGLE_SHARD_NAME}:
        return f"without {INDEX_NAME} the only shard must be {SINGLE_SHARD_NAME}; loaders differ in which of these they read"
    if len(shards) > 1 and SINGLE_SHARD_NAME in shards:
        return f"{SINGLE_SHARD_NAME} beside other shards: transformers reads it alone and ignores the index"
    return None


def verify_deployed(pack: Pack, directory: str | os.PathLike[str], attested_files: Mapping[str, str] | None = None) -> DeployedReport:
    """Check a deployed model directory against the pack (see the module docstring).

    ``attested_files`` is the signed ``{pack path: sha256}`` when there is a
    verified attestation (``attest check``); without it (``uc verify``) the
    digests of the verified manifest are the reference.
    """
    started = time.perf_counter()
    root = Path(directory)
    require_model_directory(root)
    tally = _TensorTally(pack)
    reference = attested_files if attested_files is not None else {f.path: f.sha256 for f in pack.manifest.files}
    expected = {f.path: reference.get(f.path, "") for f in pack.manifest.files if f.role not in ("codec", "passthrough")}
    files: list[DeployedFile] = []
    pack_names: list[str] = []
    shards: list[Path] = []
    index: Path | None = None
    for path in sorted(root.iterdir()):
        name, kind = path.name, _entry_kind(path)
        if kind == "dir":
            files += _nested_entries(path, name)
        elif name in expected:
            pack_names.append(name)
        elif name.endswith(".safetensors"):
            shards.append(path)  # a symlink or FIFO is refused when it is opened, and named
        elif name == INDEX_NAME and kind == "file":
            index = path
        elif name.lower().endswith(UNCHECKABLE_WEIGHT_SUFFIXES):
            files.append(DeployedFile(path=name, kind="weights", status="uncheckable-weights", detail="weights in a format this check cannot read; an engine might load them"))
        elif kind != "file":
            files.append(DeployedFile(path=name, kind="other", status="unreadable", detail=f"a {kind}: not part of the attested model"))
        elif name in INERT_FILES:
            files.append(DeployedFile(path=name, kind="inert", status="inert", detail="on the allow-list of files no loader reads"))
        else:
            files.append(_unexpected(name, "not a file of the attested pack: a loader may read it (serve it by putting it in the pack)"))
    files += _check_pack_files(root, expected, pack_names)
    buffer = bytearray(CHUNK_BYTES)
    bytes_read = 0
    checked: set[str] = set()
    for path in shards:
        got, problem = _check_shard(path, tally, buffer)
        bytes_read += got
        if problem:
            files.append(DeployedFile(path=path.name, kind="weights", status="unreadable", detail=problem))
        else:
            checked.add(path.name)
            files.append(DeployedFile(path=path.name, kind="weights", status="tensors-checked"))
    layout = _shard_layout_problem({p.name for p in shards}, index is not None)
    if layout is not None:
        files.append(DeployedFile(path=INDEX_NAME, kind="index", status="index-invalid", detail=layout))
    if index is not None:
        problem = _index_problem(index, checked, tally.seen)
        files.append(DeployedFile(path=INDEX_NAME, kind="index", status="index-invalid", detail=problem) if problem
                     else DeployedFile(path=INDEX_NAME, kind="index", status="index-checked"))  # fmt: skip
    for name in tally.expected:
        if name not in tally.seen:
            tally.finding(name, "missing", None, "attested tensor not found in any safetensors file of the directory")
    files.sort(key=lambda f: f.path)
    ok = not tally.findings and all(f.status in _PASSING for f in files)
    return DeployedReport(directory=str(root), ok=ok, tensors_expected=len(tally.expected), tensors_matching=tally.matching,
                          findings=tally.findings, files=files, bytes_read=bytes_read,
                          seconds=time.perf_counter() - started)  # fmt: skip


def require_model_directory(root: Path) -> None:
    """A usage error (exit 2) unless ``root`` is a readable directory; called before any work."""
    if root.is_symlink() or not root.is_dir():
        raise UsageError(f"no such model directory: {root}" if not root.exists() else f"{root} is not a directory (or is a symlink)")
    try:
        with os.scandir(root):
            pass
    except OSError as exc:
        raise UsageError(f"cannot read the model directory {root}: {exc.strerror or exc}") from None
