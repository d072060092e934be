"""Atomic writes: a file or directory appears at its final path complete or not at all.

A killed process, a full disk or an exception must never leave a half-written
pack, bundle, report or results file where a user would trust it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .errors import UsageError


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and a rename."""
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"output directory does not exist: {parent}")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, target)
        _fsync_dir(parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise


def refuse_output_holding_inputs(target: Path, inputs: Iterable[str | os.PathLike[str] | None]) -> None:
    """A usage error when the output directory is, or contains, one of the inputs: replacing it would delete them."""
    real = target.resolve()
    for given in inputs:
        if given is None:
            continue
        source = Path(given).resolve()
        if source == real or source.is_relative_to(real):
            raise UsageError(f"output {target} contains the input {given}: writing there would delete it (choose another output)")


@contextlib.contextmanager
def atomic_directory(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    replaceable: Callable[[Path], None] | None = None,
) -> Iterator[Path]:
    """Yield a temporary sibling directory that is renamed to ``path`` on success.

    On any exception the temporary directory is removed and ``path`` is untouched.
    Before any work: an output that is or contains one of ``inputs`` is refused,
    and with ``overwrite`` an existing ``path`` is replaced only when
    ``replaceable`` (which raises a UsageError otherwise) recognises it as a
    previous output of the same command, so ``--force`` never deletes anything else.
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"output directory does not exist: {parent}")
    refuse_output_holding_inputs(target, inputs)
    if target.exists() or target.is_symlink():
        if not overwrite:
            raise UsageError(f"output already exists: {target} (remove it or pass --force)")
        if replaceable is not None:
            replaceable(target)
    try:  # before the work: an unwritable output directory fails now, not after minutes of compression
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=parent))
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; a finished pack gets ordinary permissions
    try:
        yield tmp
        _fsync_dir(tmp)
        if target.exists():
            old = parent / f".{target.name}.old"
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
        _fsync_dir(parent)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
