"""Output files: checked before the work starts, written all together or not at all.

Why: ``attest check --json ok.json --report /unwritable/r.pdf`` used to run the
whole check (minutes), write ok.json, then fail on the report, leaving a
results file with no report beside it. Every command that writes files now

1. calls :func:`ensure_outputs_writable` before any work: each output's directory exists
   and is writable (proved by creating and removing a temporary file there, so
   read-only mounts and permissions are caught, not guessed), no output is an
   existing directory, no two outputs are the same file, none is an input;
2. builds every output's bytes in memory, then calls :func:`write_all`, which
   writes each to a temporary sibling first and renames them into place only
   once all are written. If a rename still fails, the outputs already renamed
   are put back as they were (a file that existed before is restored), so a
   failure leaves either every output or none of them.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .atomic import _fsync_dir
from .errors import UsageError


@dataclass(frozen=True)
class Output:
    """One file a command will write: where, what, with which permissions."""

    path: Path
    data: bytes
    mode: int = 0o644


def _parent(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


def ensure_outputs_writable(outputs: Sequence[Path | None], inputs: Iterable[Path | None] = (), *, overwrite: bool = True) -> None:
    """Refuse, before any work, outputs that could not be written; one-line exit-2 errors."""
    given = [Path(p) for p in outputs if p is not None]
    resolved = [p.resolve() for p in given]
    if len(set(resolved)) != len(resolved):
        raise UsageError("two outputs name the same file")
    taken = {Path(p).resolve() for p in inputs if p is not None}
    for path, real in zip(given, resolved, strict=True):
        if real in taken:
            raise UsageError(f"{path} would overwrite an input")
        if path.is_dir():
            raise UsageError(f"output {path} is a directory")
        if path.exists() and not overwrite:
            raise UsageError(f"output already exists: {path} (remove it or pass --force)")
        check_writable(path)


def check_writable(path: Path) -> None:
    """Refuse, before any work, an output (file or directory) whose parent does not exist or cannot be written."""
    parent = _parent(path)
    if not parent.is_dir():
        raise UsageError(f"output directory does not exist: {parent}")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(probe)


def _stage(output: Output) -> str:
    parent = _parent(output.path)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.path.name}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(output.data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, output.mode)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def write_all(outputs: Sequence[Output]) -> None:
    """Write every output or none (see the module docstring); an ``OSError`` becomes one exit-2 error line."""
    staged: list[tuple[Output, str]] = []
    placed: list[tuple[Output, str | None]] = []  # (output, backup of the file it replaced)
    current: Path | None = None
    try:
        for output in outputs:
            current = output.path
            staged.append((output, _stage(output)))
        for output, tmp in staged:
            current = output.path
            backup = None
            if output.path.exists():
                backup = f"{tmp}.old"  # beside the unique staged name: unique too
                os.link(output.path, backup)
            os.replace(tmp, output.path)
            placed.append((output, backup))
        for output, _ in staged:
            _fsync_dir(_parent(output.path))
    except BaseException as exc:
        for output, backup in reversed(placed):
            with contextlib.suppress(OSError):
                if backup is not None:
                    os.replace(backup, output.path)
                else:
                    os.unlink(output.path)
        for _output, tmp in staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(exc, OSError):
            raise UsageError(f"cannot write {current}: {exc.strerror or exc}; no output was written") from None
        raise
    for _output, backup in placed:
        if backup is not None:
            with contextlib.suppress(OSError):
                os.unlink(backup)
