"""``uc verify``: walk a pack and prove every byte and every reconstructed tensor.

Steps: open the manifest strictly; walk the directory (symlinks and unlisted
files fail); read every listed file once, check size and SHA-256; parse
safetensors shards strictly from the same bytes; reconstruct every tensor and
compare its digest and shape. Files are processed in parallel threads (hashlib
and the reconstruction kernel release the GIL).

This path imports numpy and pydantic, never torch or transformers: proving the
bytes of a pack is the customer's wait, and it should be the disk's and the
hash's time, not a framework's start-up. The one check that needs transformers,
the tensor set against the architecture config.json describes (consistency.py),
runs only when asked for (``architecture=True``, ``uc verify --architecture``).
It guards against a malformed pack, not a tampered one: anyone who can edit the
manifest can edit config.json to match, and only the signature catches that.
``attest sign`` and ``attest check`` always ask for it.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from tqdm import tqdm

from ..progress import bar_disabled
from ..safe_io import is_regular_file
from .manifest import MANIFEST_NAME
from .reader import Pack, open_pack, read_pack_file
from .safetensors_strict import TensorSlot
from .stream_verify import TensorJobs, verify_shard_streaming
from .verified import FileCheck, TensorCheck, VerifiedPack, VerifyReport


def walk_problems(pack: Pack, tolerate_unlisted: bool = False) -> tuple[list[str], list[str]]:
    """``(problems, tolerated)``: symlinks, special files, unlisted files and stray directories inside the pack.

    The one rule for files nobody signed (policy ``weights.allow_unattested_files``,
    shared with the ``pack_files`` check): with ``tolerate_unlisted``, a regular
    file or a directory that the manifest does not list is *tolerated* (it is
    reported, and never read or loaded); without it, it is a problem. Symlinks
    and FIFOs, sockets or devices are problems either way.
    """
    listed = {f.path for f in pack.manifest.files} | {MANIFEST_NAME}
    listed_dirs = {str(Path(p).parent) for p in listed} - {"."}
    problems: list[str] = []
    tolerated: list[str] = []
    for dirpath, dirnames, filenames in os.walk(pack.root, followlinks=False):
        rel_dir = os.path.relpath(dirpath, pack.root)
        for name in sorted(dirnames + filenames):
            full = Path(dirpath) / name
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            unlisted = None
            if full.is_symlink():
                problems.append(f"{rel}: is a symlink (a pack holds regular files only)")
            elif full.is_dir():
                if rel not in listed_dirs:
                    unlisted = f"{rel}/: directory not in the manifest"
            elif not is_regular_file(full):
                problems.append(f"{rel}: not a regular file (a pack holds regular files only)")
            elif rel not in listed:
                unlisted = f"{rel}: file present but not in the manifest"
            if unlisted is not None:
                (tolerated if tolerate_unlisted else problems).append(unlisted)
        dirnames[:] = [d for d in dirnames if not (Path(dirpath) / d).is_symlink()]
    return problems, tolerated


KEPT_ROLES = ("config", "tokenizer")  # small files a later stage parses: kept as hashed
MAX_KEPT_BYTES = 64 << 20


class _FileOutcome(NamedTuple):
    check: FileCheck
    tensors: list[TensorCheck]
    problems: list[str]
    nbytes: int
    kept: bytes | None  # the file's bytes, for a config or tokenizer file that matched
    slots: dict[str, TensorSlot]  # a shard's header as parsed, for later reads of single tensors


def _check_file(pack: Pack, path: str, jobs: TensorJobs | None = None) -> _FileOutcome:
    entry = pack.manifest.file(path)
    tensors: list[TensorCheck] = []
    kept: bytes | None = None
    slots: dict[str, TensorSlot] = {}
    if entry.role in ("codec", "passthrough"):
        entries = pack.tensors_in(path)
        outcome = verify_shard_streaming(pack.root, entry, entries, jobs)
        problems = list(outcome.problems)
        for t in entries:
            problem = outcome.tensors.get(t.name)
            if problem:
                problems.append(problem)
            tensors.append(TensorCheck(name=t.name, kind=t.kind, role=t.role, digest=t.digest, ok=problem is None))
        actual, nbytes, slots = outcome.sha256, outcome.size, outcome.slots
    else:
        data, problems = read_pack_file(pack, entry)
        actual = hashlib.sha256(data).hexdigest() if data is not None else ""
        nbytes = len(data) if data is not None else 0
        if data is not None and not problems and entry.role in KEPT_ROLES and nbytes <= MAX_KEPT_BYTES:
            kept = bytes(data)
    fc = FileCheck(path=path, size=nbytes, sha256=actual, ok=not problems)
    return _FileOutcome(fc, tensors, problems, nbytes, kept, slots)


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _consistency_problems(pack: Pack) -> list[str]:
    """The tensor set against the config, parsed from the bytes whose SHA-256 matched the manifest.

    A config that is missing or does not match its hash is reported by the file
    checks; then there is no trustworthy config to compare with, and nothing is
    added here. (The manifest model guarantees the config file is listed.)
    """
    from .consistency import config_problems  # imports torch and transformers: only when asked for

    data, problems = read_pack_file(pack, pack.manifest.file(pack.manifest.model.config_file))
    if problems or data is None:
        return []
    return config_problems(bytes(data), pack.manifest)


def verify_pack(path: str | os.PathLike[str], progress: bool = True, workers: int | None = None,
                architecture: bool = False, tolerate_unlisted: bool = False) -> VerifiedPack:  # fmt: skip
    """Verify every file and tensor of the pack at ``path``; with ``architecture``, also the tensor set against its config.

    ``tolerate_unlisted`` (``attest check`` under ``allow_unattested_files``) reports files the manifest does
    not list in ``tolerated`` instead of failing; see :func:`walk_problems`.

    One pass: each file is read once, hashed, and its tensors rebuilt from the
    same bytes. The returned :class:`VerifiedPack` carries what was learnt, for
    the stages that follow (signing, checking, evaluation).
    """
    start = time.perf_counter()
    pack = open_pack(path)
    failures, tolerated = walk_problems(pack, tolerate_unlisted)
    files = sorted(pack.manifest.files, key=lambda f: -f.size)  # big first: better packing of threads
    total = sum(f.size for f in files)
    results: dict[str, _FileOutcome] = {}
    bar = tqdm(total=total, unit="B", unit_scale=True, desc="verify", disable=bar_disabled(progress), file=None, leave=False)
    config_check: list[list[str]] = []
    consistency = None
    if architecture:  # imports transformers' model class (seconds of CPU): run it beside the hashing
        consistency = threading.Thread(target=lambda: config_check.append(_consistency_problems(pack)), daemon=True)
        consistency.start()
    # Files are read and hashed on one pool; the tensors inside them are checked on another, so
    # one big shard still keeps every core busy (a file's own SHA-256 is sequential).
    count = workers or default_workers()
    with TensorJobs(count) as jobs, ThreadPoolExecutor(max_workers=count) as pool:
        futures = {f.path: pool.submit(_check_file, pack, f.path, jobs) for f in files}
        for f in files:
            results[f.path] = futures[f.path].result()
            bar.update(f.size)
    bar.close()
    if consistency is not None:
        consistency.join()
    file_checks: list[FileCheck] = []
    tensor_checks: list[TensorCheck] = []
    bytes_read = 0
    kept: dict[str, bytes] = {}
    shard_slots: dict[str, dict[str, TensorSlot]] = {}
    for f in sorted(pack.manifest.files, key=lambda f: f.path):
        fc, tcs, problems, nbytes, data, slots = results[f.path]
        if data is not None:
            kept[f.path] = data
        if slots and not problems:
            shard_slots[f.path] = slots
        file_checks.append(fc)
        tensor_checks.extend(tcs)
        failures.extend(problems)
        bytes_read += nbytes
    if architecture:
        failures.extend(config_check[0] if config_check else ["the consistency check of the config did not complete"])
    seen = {t.name for t in tensor_checks}
    for t in pack.manifest.tensors:
        if t.name not in seen:
            failures.append(f"{t.name}: not checked (its shard is not a codec or passthrough file)")
    tensor_checks.sort(key=lambda t: t.name)
    report = VerifyReport(
        ok=not failures,
        failures=failures,
        format=pack.manifest.format,
        format_version=pack.manifest.format_version,
        manifest_sha256=pack.manifest_sha256,
        files=file_checks,
        tensors=tensor_checks,
        bytes_read=bytes_read,
        seconds=round(time.perf_counter() - start, 3),
        architecture_checked=architecture,
        tolerated=tolerated,
    )
    return VerifiedPack(pack=pack, report=report, small_files=kept, shard_slots=shard_slots)


__all__ = ["verify_pack"]
