"""Opening and reading the files the tool is given: regular files only, sizes bounded before reading.

Why one module: every file the tool reads (pack members, bundles, policies,
token files, keys, reports, model directories) can be swapped by whoever
controls the disk. Two classes of attack follow from a careless ``open()``:

* a FIFO, socket or device put in place of a file makes ``open()`` or
  ``read()`` block forever (a FIFO without a writer) or return endless bytes
  (``/dev/zero``). Here every file is opened with ``O_NONBLOCK`` (a FIFO's
  ``open`` then returns at once), checked with ``fstat`` on the very descriptor
  that will be read, and refused unless it is a regular file; only then is
  ``O_NONBLOCK`` cleared;
* a huge file (a sparse 2 GiB ``tokenizer.json`` whose signed size is 13 KB)
  makes the reader allocate what the attacker chose. Here the size from
  ``fstat`` is compared with the size the caller expects (the signed or
  manifest size) or with a hard cap *before* a byte is read, so peak memory is
  bounded by the signed sizes, not by what is on disk.

The functions raise ``OSError`` subclasses (so callers keep their own mapping
to exit codes: a pack member that is not a regular file is a verification
failure, exit 1; an input the user named, exit 2); ``read_input_file`` does that
mapping for inputs the user named.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import UnreadableInputError, UsageError

_CHUNK = 1 << 20


class NotRegularFileError(OSError):
    """The path names a FIFO, socket, device or directory, not a regular file."""


class FileTooLargeError(OSError):
    """The file is larger than its cap; nothing of it was read."""


class FileSizeMismatchError(OSError):
    """The file's size differs from the size the caller expects (signed or listed); nothing was read."""

    def __init__(self, name: str, actual: int, expected: int) -> None:
        super().__init__(errno.EINVAL, f"{name}: size {actual} differs from the expected {expected}")
        self.actual = actual
        self.expected = expected


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISLNK(mode):
        return "a symlink"
    return "not a regular file"


def open_regular_fd(path: str | os.PathLike[str], *, follow_symlinks: bool = True) -> tuple[int, os.stat_result]:
    """A read-only descriptor of a regular file and its ``fstat``; raise ``OSError`` otherwise.

    The open itself never blocks (``O_NONBLOCK``); a socket fails it with ENXIO,
    a FIFO or device is refused after ``fstat``. With ``follow_symlinks=False``
    a symlink is refused (``O_NOFOLLOW``: ELOOP).
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    name = Path(path).name or str(path)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket (or a device without its driver): not something to read
            raise NotRegularFileError(errno.ENXIO, f"{name} is a socket or device, not a regular file") from None
        if exc.errno == errno.ELOOP and not follow_symlinks:
            raise OSError(errno.ELOOP, f"{name} is a symlink") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError(errno.EINVAL, f"{name} is {_kind(st.st_mode)}, not a regular file")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def check_size(name: str, size: int, *, limit: int | None = None, expected_size: int | None = None) -> None:
    """Refuse a size before reading: different from the expected one, or above the cap."""
    if expected_size is not None and size != expected_size:
        raise FileSizeMismatchError(name, size, expected_size)
    if limit is not None and size > limit:
        raise FileTooLargeError(errno.EFBIG, f"{name} is {size} bytes, more than the {limit} allowed")


def _read_exactly(fd: int, size: int, name: str) -> bytearray:
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = os.readv(fd, [view[got:]])
        if n == 0:
            break
        got += n
    if got != size or os.read(fd, 1):
        raise OSError(errno.EIO, f"{name} changed size while being read")
    return buf


def read_regular_file(
    path: str | os.PathLike[str], limit: int | None = None, *, expected_size: int | None = None, follow_symlinks: bool = False
) -> bytearray:
    """The whole content of a regular file, read once; its size is checked against ``expected_size``/``limit`` first."""
    name = Path(path).name or str(path)
    fd, st = open_regular_fd(path, follow_symlinks=follow_symlinks)
    try:
        check_size(name, st.st_size, limit=limit, expected_size=expected_size)
        return _read_exactly(fd, st.st_size, name)
    finally:
        os.close(fd)


@contextlib.contextmanager
def open_regular(
    path: str | os.PathLike[str], *, limit: int | None = None, expected_size: int | None = None, follow_symlinks: bool = True
) -> Iterator[BinaryIO]:
    """A binary file object on a regular file whose size passed the checks (for streaming readers)."""
    name = Path(path).name or str(path)
    fd, st = open_regular_fd(path, follow_symlinks=follow_symlinks)
    try:
        check_size(name, st.st_size, limit=limit, expected_size=expected_size)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        yield handle


def sha256_regular_file(path: str | os.PathLike[str], *, follow_symlinks: bool = True, limit: int | None = None) -> tuple[int, str]:
    """``(size, SHA-256 hex)`` of a regular file, streamed in 1 MiB chunks (memory does not follow the size)."""
    digest = hashlib.sha256()
    size = 0
    with open_regular(path, follow_symlinks=follow_symlinks, limit=limit) as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def is_regular_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` (not following a final symlink) is a regular file; never opens it."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def read_input_file(path: str | os.PathLike[str], what: str, limit: int, *, follow_symlinks: bool = True) -> bytes:
    """An input the user named (bundle, policy, key, report...): its bytes, or a one-line exit-2 error.

    Missing -> ``UsageError``; a directory, FIFO, socket, device, a file over
    ``limit`` or an unreadable one -> ``UnreadableInputError``. Both exit 2.
    """
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{what} is a directory, not a file: {p}")
    try:
        return bytes(read_regular_file(p, limit, follow_symlinks=follow_symlinks))
    except FileNotFoundError:
        raise UsageError(f"{what} not found: {p}") from None
    except (NotRegularFileError, FileTooLargeError) as exc:
        raise UnreadableInputError(f"cannot use {what} {p}: {exc.strerror or exc}") from None
    except IsADirectoryError:
        raise UnreadableInputError(f"cannot use {what} {p}: it is a directory") from None
    except OSError as exc:
        raise UnreadableInputError(f"cannot read {what} {p}: {exc.strerror or exc}") from None


def special_files_under(root: str | os.PathLike[str]) -> list[str]:
    """Relative paths of every entry under ``root`` that a reader must not open: FIFOs, sockets, devices.

    Used before handing a directory to a library that opens files itself
    (transformers' ``from_pretrained``, ``AutoTokenizer``), which would block on a FIFO.
    """
    base = Path(root)
    odd: list[str] = []
    for dirpath, _dirnames, filenames in os.walk(base, followlinks=False):
        for name in filenames:
            full = Path(dirpath) / name
            try:
                mode = os.stat(full).st_mode  # through a symlink: what a library would open
            except OSError:
                continue
            if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
                odd.append(f"{full.relative_to(base).as_posix()} is {_kind(mode)}")
    return sorted(odd)
