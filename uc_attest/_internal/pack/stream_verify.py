"""Verifying one shard in a single sequential read with bounded memory.

The file is read once, front to back. Every byte feeds the file's SHA-256; the
bytes of each tensor slot are routed, as they pass, to that tensor's check:
a passthrough tensor's digest is hashed from its raw bytes, and a quantized
tensor's codes are reconstructed a group of rows at a time (its codebook and
scales, which the writer places before the codes, are small and kept).

A tensor's digest is one sequential SHA-256, but different tensors are
independent: slots up to ``OFFLOAD_LIMIT`` bytes are handed, once read, to a
shared pool (:class:`TensorJobs`) so that reconstruction and digests run on
every core while this thread keeps reading and hashing the file. At most one
slot per worker is in flight, so memory stays bounded by workers x
OFFLOAD_LIMIT plus one reconstruction group each; larger slots are streamed
group by group on the reading thread.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..safe_io import NotRegularFileError, open_regular_fd
from ..codec.canonical import STORAGE_OF, digest_header, little_endian_bytes, reconstruct_array, scales_shape
from .manifest import FileEntry, QuantizedStorage, TensorEntry
from .safetensors_strict import SafetensorsFormatError, TensorSlot, parse_header, read_header_length

CHUNK_BYTES = 8 << 20  # read size
GROUP_ELEMENTS = 1 << 19  # reconstruction groups aim at this many weights: 1 MiB of bf16, hashed while still in cache
SMALL_SLOT_LIMIT = 256 << 20  # codebooks and scales kept whole; beyond this a slot is streamed
OFFLOAD_LIMIT = 64 << 20  # tensor slots up to this size are checked on the pool, larger ones streamed in place
SAFETENSORS_DTYPE = {"bfloat16": "BF16", "float16": "F16", "float32": "F32", "float64": "F64", "int64": "I64",
                     "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}  # fmt: skip


@dataclass
class StreamOutcome:
    sha256: str = ""
    size: int = 0
    problems: list[str] = field(default_factory=list)
    tensors: dict[str, str | None] = field(default_factory=dict)  # name -> problem (None when ok)
    slots: dict[str, TensorSlot] = field(default_factory=dict)  # the header as parsed (absolute offsets)


class _Reader:
    """Sequential reads that all pass through the file hash.

    Reads land in buffers that are used again rather than in fresh ones: a
    fresh buffer of megabytes is fresh pages, which the kernel faults in and
    zeroes, and bytearray() zeroes once more, so that reading through fresh
    buffers ran at a third of the speed of reading into a reused one (266 MB
    shard, same run). :meth:`read` still returns a new buffer, for bytes that
    are kept (codebooks and scales); :meth:`read_transient` and
    :meth:`read_into` return views of reused memory.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.hash = hashlib.sha256()
        self.pos = 0
        self.scratch = bytearray()

    def read_into(self, buffer: bytearray, n: int) -> memoryview:
        """Up to ``n`` bytes (fewer only at end of file) into ``buffer``, hashed once; a view of them."""
        view = memoryview(buffer)[:n]
        got = 0
        while got < n:
            count = os.readv(self.fd, [view[got : got + CHUNK_BYTES]])
            if not count:
                break
            got += count
        data = view[:got]
        self.hash.update(data)
        self.pos += got
        return data

    def read(self, n: int) -> bytes | bytearray:
        """Up to ``n`` bytes in a buffer of their own (kept by the caller)."""
        buffer = bytearray(n)
        got = len(self.read_into(buffer, n))
        return buffer if got == n else bytes(buffer[:got])

    def read_transient(self, n: int) -> memoryview:
        """Up to ``n`` bytes in this reader's scratch buffer, valid until its next transient read."""
        if len(self.scratch) < n:
            self.scratch = bytearray(n)
        return self.read_into(self.scratch, n)

    def skip(self, n: int) -> None:
        """Pass ``n`` bytes through the file hash without keeping them (a slot that is not checked)."""
        while n > 0 and (chunk := self.read_transient(min(n, CHUNK_BYTES))):
            n -= len(chunk)

    def drain(self) -> None:
        while self.read_transient(CHUNK_BYTES):
            pass


class _BufferReader:
    """The ``read(n)`` of :class:`_Reader` over bytes already read (and hashed) whole."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.view = memoryview(data)
        self.pos = 0

    def read(self, n: int) -> bytes | memoryview:
        part = self.view[self.pos : self.pos + n]
        self.pos += len(part)
        return part


class TensorJobs:
    """A thread pool for per-tensor checks, with at most one queued or running slot per worker.

    The bound is what keeps memory independent of the pack: the reading thread
    blocks until a worker is free before it reads the next offloaded slot, and
    reads it into that worker's buffer, which is reused slot after slot (see
    :class:`_Reader` for why fresh buffers are slow). hashlib and the
    reconstruction kernel release the GIL, so threads scale with cores.
    """

    def __init__(self, workers: int) -> None:
        count = max(1, workers)
        self.pool = ThreadPoolExecutor(max_workers=count, thread_name_prefix="uc-verify-tensor")
        self.slots = threading.BoundedSemaphore(count)
        self.free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(count):
            self.free.put(bytearray())

    def reserve(self, nbytes: int) -> bytearray:
        """Wait for a free worker; its buffer, at least ``nbytes`` long. Hand it to :meth:`submit` (or :meth:`cancel`)."""
        self.slots.acquire()
        buffer = self.free.get()
        if len(buffer) < nbytes:
            buffer = bytearray(nbytes)
        return buffer

    def cancel(self, buffer: bytearray) -> None:
        self.free.put(buffer)
        self.slots.release()

    def submit(self, job: Callable[[], str | None], buffer: bytearray) -> Future[str | None]:
        """Run ``job`` (which reads ``buffer``) on the pool; the buffer and the slot are free again when it ends."""

        def run() -> str | None:
            try:
                return job()
            finally:
                self.cancel(buffer)

        try:
            return self.pool.submit(run)
        except BaseException:
            self.cancel(buffer)
            raise

    def __enter__(self) -> TensorJobs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True)


def _rows_per_group(entry: TensorEntry) -> int:
    """Rows (along axis 0) per reconstruction group: byte-aligned codes, whole scale rows, whole transform runs."""
    assert entry.codec is not None
    row = math.prod(entry.shape[1:]) if len(entry.shape) > 1 else 1
    transform = entry.codec.transform  # a transform along axis 0 mixes runs of its size: a group holds whole runs
    align = 8 if entry.codec.block_axis != 0 else math.lcm(8, entry.codec.block_size, transform.size if transform else 1)
    rows = max(align, (GROUP_ELEMENTS // max(1, row)) // align * align)
    return rows


_GROUP_BUFFERS = threading.local()


def _group_buffer(dtype: str) -> np.ndarray:
    """This thread's reusable output buffer: no fresh pages (and page faults) for every group."""
    buffers = getattr(_GROUP_BUFFERS, "by_dtype", None)
    if buffers is None:
        buffers = _GROUP_BUFFERS.by_dtype = {}
    if dtype not in buffers:
        buffers[dtype] = np.empty(GROUP_ELEMENTS, dtype=STORAGE_OF[dtype])
    return buffers[dtype]


def _quantized_slot_problem(entry: TensorEntry, slot: TensorSlot) -> str | None:
    params = entry.codec
    assert params is not None
    if slot.dtype != "U8" or len(slot.shape) != 1:
        return f"{entry.name}: codes must be a flat uint8 tensor"
    expected = (math.prod(entry.shape) * params.bits + 7) // 8
    if slot.end - slot.start != expected:
        return f"{entry.name}: packed codes have {slot.end - slot.start} bytes, expected {expected}"
    return None


def _quantized_digest_problem(read: Callable[[int], bytes | memoryview], entry: TensorEntry, codebook: np.ndarray | None,
                              scales: np.ndarray | None) -> str | None:  # fmt: skip
    """Reconstruct a quantized tensor group by group from ``read`` and compare its digest."""
    assert codebook is not None and scales is not None  # _codec_state_problem refused the tensor otherwise
    params = entry.codec
    assert params is not None
    count = math.prod(entry.shape)
    expected = (count * params.bits + 7) // 8
    digest = hashlib.sha256(digest_header(entry.dtype, entry.shape))
    rows_total = entry.shape[0]
    row = count // rows_total if rows_total else 0
    step = _rows_per_group(entry)
    buffer = _group_buffer(params.dtype)
    problem = None
    for r0 in range(0, rows_total, step):
        r1 = min(rows_total, r0 + step)
        b0 = r0 * row * params.bits // 8
        b1 = expected if r1 == rows_total else r1 * row * params.bits // 8
        data = read(b1 - b0)
        if problem is not None:
            continue
        try:
            shape = (r1 - r0, *entry.shape[1:])
            if params.block_axis == 0:
                sc = scales[r0 // params.block_size : -(-r1 // params.block_size)]
            else:
                sc = scales[r0:r1]
            part = reconstruct_array(np.frombuffer(data, dtype=np.uint8), codebook, sc, shape, params, out=buffer)
            digest.update(little_endian_bytes(part))  # type: ignore[arg-type]  # numpy arrays export the buffer protocol
        except (ValueError, IndexError) as exc:
            problem = f"{entry.name}: {exc}"
    if problem:
        return problem
    if "sha256:" + digest.hexdigest() != entry.digest:
        return f"{entry.name}: reconstruction digest differs from the manifest's"
    return None


# numpy dtypes of the small codec tensors (codebook, scales); any other stored dtype is a finding.
_SMALL_NUMPY_OF: dict[str, np.dtype[Any]] = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "F64": np.dtype("<f8"), "U8": np.dtype("u1"),
                   "I8": np.dtype("i1"), "I16": np.dtype("<i2"), "I32": np.dtype("<i4"), "I64": np.dtype("<i8"),
                   "BF16": np.dtype("<u2"), "BOOL": np.dtype("u1")}  # fmt: skip


@dataclass(frozen=True)
class _SmallTensor:
    """A codebook or scale tensor as read: its stored safetensors dtype and its values."""

    dtype: str
    array: np.ndarray


def _small_tensor(data: bytes | bytearray, slot: TensorSlot) -> _SmallTensor:
    if slot.dtype not in _SMALL_NUMPY_OF:
        raise ValueError(f"dtype {slot.dtype} is not supported")
    array = np.frombuffer(data, dtype=_SMALL_NUMPY_OF[slot.dtype]).reshape(slot.shape)
    return _SmallTensor(slot.dtype, array.astype(array.dtype.newbyteorder("="), copy=False))


def verify_shard_streaming(root: Path, file: FileEntry, entries: list[TensorEntry], jobs: TensorJobs | None = None) -> StreamOutcome:
    """Hash the file and check every tensor in it; tensor checks may run on ``jobs`` (see the module docstring)."""
    out = StreamOutcome()
    path = root / file.path
    try:
        fd, st = open_regular_fd(path, follow_symlinks=False)  # a FIFO or device is refused without blocking
    except FileNotFoundError:
        out.problems.append(f"{file.path}: missing")
        return out
    except NotRegularFileError as exc:
        out.problems.append(f"{file.path}: {exc.strerror}")
        return out
    except OSError as exc:
        out.problems.append(f"{file.path}: {'is a symlink' if path.is_symlink() else exc.strerror or exc}")
        return out
    try:
        if st.st_size != file.size:  # refused before reading: time and memory follow the manifest's sizes
            out.problems.append(f"{file.path}: size {st.st_size} differs from the manifest's {file.size}")
            for entry in entries:
                out.tensors[entry.name] = f"{entry.name}: its shard {file.path} does not have the listed size"
            return out
        reader = _Reader(fd)
        pending: dict[str, Future[str | None]] = {}
        try:
            _verify_stream(reader, st.st_size, file, entries, out, jobs, pending)
            reader.drain()
        finally:
            for name, future in pending.items():
                out.tensors[name] = future.result()
        out.size, out.sha256 = reader.pos, reader.hash.hexdigest()
    finally:
        os.close(fd)
    if out.size != file.size:
        out.problems.append(f"{file.path}: size {out.size} differs from the manifest's {file.size}")
    if out.sha256 != file.sha256:
        out.problems.append(f"{file.path}: SHA-256 {out.sha256} differs from the manifest's {file.sha256}")
    for entry in entries:
        out.tensors.setdefault(entry.name, f"{entry.name}: not found in {file.path}")
    return out


def _verify_stream(reader: _Reader, size: int, file: FileEntry, entries: list[TensorEntry], out: StreamOutcome,
                   jobs: TensorJobs | None, pending: dict[str, Future[str | None]]) -> None:  # fmt: skip
    try:
        header_len = read_header_length(reader.read(8), size, file.path)
        slots, _ = parse_header(bytes(reader.read(header_len)), size, file.path)
    except SafetensorsFormatError as exc:
        out.problems.append(str(exc))
        for entry in entries:
            out.tensors[entry.name] = f"{entry.name}: its shard {file.path} is not readable"
        return
    by_key = {s.name: s for s in slots}
    out.slots = by_key
    owner: dict[str, tuple[TensorEntry, str]] = {}
    for entry in entries:
        st = entry.storage
        keys = {"codes": st.codes, "scales": st.scales, "codebook": st.codebook} if isinstance(st, QuantizedStorage) else {"key": st.key}
        for part, key in keys.items():
            owner[key] = (entry, part)
        missing = [k for k in keys.values() if k not in by_key]
        if missing:
            out.tensors[entry.name] = f"{entry.name}: {missing[0]!r} is missing from {file.path}"
    kept: dict[str, _SmallTensor] = {}
    for slot in slots:
        nbytes = slot.end - slot.start
        if slot.name not in owner:
            reader.skip(nbytes)
            out.problems.append(f"{file.path}: holds tensor {slot.name!r} that the manifest does not list")
            continue
        entry, part = owner[slot.name]
        if entry.name in out.tensors:  # already failed
            reader.skip(nbytes)
            continue
        if part == "key":
            _check_slot(reader, nbytes, entry.name, _passthrough_slot_problem(entry, slot),
                        functools.partial(_passthrough_digest_problem, entry=entry, nbytes=nbytes), jobs, pending, out)  # fmt: skip
        elif part in ("scales", "codebook"):
            if nbytes > SMALL_SLOT_LIMIT:
                reader.skip(nbytes)
                out.tensors[entry.name] = f"{entry.name}: {part} are implausibly large"
                continue
            try:
                kept[slot.name] = _small_tensor(reader.read(nbytes), slot)
            except ValueError as exc:
                out.tensors[entry.name] = f"{entry.name}: {exc}"
        else:
            st = entry.storage
            assert isinstance(st, QuantizedStorage)
            codebook, scales = kept.get(st.codebook), kept.get(st.scales)
            problem = _codec_state_problem(entry, codebook, scales) or _quantized_slot_problem(entry, slot)
            check = functools.partial(_quantized_digest_problem, entry=entry,
                                      codebook=codebook.array if codebook else None, scales=scales.array if scales else None)  # fmt: skip
            _check_slot(reader, nbytes, entry.name, problem, check, jobs, pending, out)  # type: ignore[arg-type]


def _check_slot(reader: _Reader, nbytes: int, name: str, problem: str | None,
                check: Callable[[Callable[[int], bytes | memoryview]], str | None], jobs: TensorJobs | None,
                pending: dict[str, Future[str | None]], out: StreamOutcome) -> None:  # fmt: skip
    """Consume one tensor slot: skip it when ``problem`` is known, else run ``check(read)`` over its bytes.

    Small slots are read whole (through the file hash) and checked on the pool;
    larger ones are checked here, group by group, as they stream past.
    """
    if problem:
        reader.skip(nbytes)
        out.tensors[name] = problem
    elif jobs is not None and nbytes <= OFFLOAD_LIMIT:
        buffer = jobs.reserve(nbytes)
        try:
            held = _BufferReader(reader.read_into(buffer, nbytes))
        except BaseException:
            jobs.cancel(buffer)
            raise
        pending[name] = jobs.submit(functools.partial(check, held.read), buffer)
    else:  # streamed: checked on a helper thread while this one reads (and hashes) ahead
        out.tensors[name] = _check_streamed(reader, nbytes, check)


STREAM_BUFFERS = 3  # chunks in flight between the reading thread and a streamed slot's check


class _ChunkFeed:
    """Chunks of one slot handed from the reading thread to the thread checking it, in order, in reused buffers.

    The consumer's ``read(n)`` has the contract of :meth:`_Reader.read_transient`
    (a view valid until its next read); a buffer goes back to the producer only
    when the consumer has moved past it. When the consumer stops early (it
    finished or raised), :meth:`close` hands every buffer back and the producer
    reads the rest of the slot through the file hash alone.
    """

    def __init__(self) -> None:
        self.free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(STREAM_BUFFERS):
            self.free.put(bytearray(CHUNK_BYTES))
        self.full: queue.SimpleQueue[tuple[bytearray, memoryview] | None] = queue.SimpleQueue()
        self.closed = threading.Event()
        self.buffer: bytearray | None = None
        self.view = memoryview(b"")
        self.offset = 0
        self.ended = False
        self.scratch = bytearray()

    def _ensure(self) -> bool:
        """A current chunk with bytes left, or False at the end of the slot."""
        if self.offset < len(self.view):
            return True
        if self.buffer is not None:
            self.free.put(self.buffer)
            self.buffer, self.view = None, memoryview(b"")
        if self.ended:
            return False
        item = self.full.get()
        if item is None:
            self.ended = True
            return False
        (self.buffer, self.view), self.offset = item, 0
        return True

    def read(self, n: int) -> memoryview:
        """Up to ``n`` bytes (fewer only at the end of the slot); a view valid until the next read."""
        if n <= 0 or not self._ensure():
            return memoryview(b"")
        if self.offset + n <= len(self.view):  # inside one chunk: no copy
            part = self.view[self.offset : self.offset + n]
            self.offset += n
            return part
        if len(self.scratch) < n:
            self.scratch = bytearray(n)
        got = 0
        while got < n and self._ensure():  # across chunks: assembled in scratch
            take = min(n - got, len(self.view) - self.offset)
            self.scratch[got : got + take] = self.view[self.offset : self.offset + take]
            got += take
            self.offset += take
        return memoryview(self.scratch)[:got]

    def close(self) -> None:
        """The consumer is done: every buffer it holds or has not taken goes back to the producer."""
        self.closed.set()
        if self.buffer is not None:
            self.free.put(self.buffer)
            self.buffer = None
        while True:
            try:
                item = self.full.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self.free.put(item[0])


def _check_streamed(reader: _Reader, nbytes: int, check: Callable[[Callable[[int], bytes | memoryview]], str | None]) -> str | None:
    """``check`` over a slot too large to hold, on a helper thread, while this thread reads and hashes the file ahead of it.

    The file's SHA-256 and the tensor's check (its digest, and the reconstruction
    of quantized codes) are independent work over the same bytes; done one after
    the other on the reading thread they made the largest slot (an embedding
    kept in bf16) the critical path of ``uc verify``. Memory: STREAM_BUFFERS chunks.
    """
    feed = _ChunkFeed()
    outcome: list[str | None] = []
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            outcome.append(check(feed.read))
        except BaseException as exc:  # re-raised on the reading thread
            errors.append(exc)
        finally:
            feed.close()

    helper = threading.Thread(target=consume, name="uc-verify-stream", daemon=True)
    helper.start()
    try:
        left = nbytes
        while left and not feed.closed.is_set():
            buffer = feed.free.get()
            data = reader.read_into(buffer, min(left, CHUNK_BYTES))
            if not data:
                feed.free.put(buffer)
                break
            feed.full.put((buffer, data))
            left -= len(data)
        reader.skip(left)  # after the consumer stopped early: the rest still feeds the file hash
    finally:
        feed.full.put(None)
        helper.join()
    if errors:
        raise errors[0]
    return outcome[0]


def _codec_state_problem(entry: TensorEntry, codebook: _SmallTensor | None, scales: _SmallTensor | None) -> str | None:
    assert entry.codec is not None
    if codebook is None or scales is None:
        return f"{entry.name}: codebook and scales must precede the codes in the shard"
    if codebook.dtype != "F32" or codebook.array.ndim != 1 or codebook.array.size != 1 << entry.codec.bits:
        return f"{entry.name}: codebook must be float32 with 2**bits entries"
    if not np.isfinite(codebook.array).all():
        return f"{entry.name}: codebook holds NaN or infinity"
    if scales.dtype != "F16":
        return f"{entry.name}: scales must be float16"
    if not np.isfinite(scales.array).all():
        return f"{entry.name}: scales hold NaN or infinity"
    if tuple(scales.array.shape) != scales_shape(tuple(entry.shape), entry.codec):
        return f"{entry.name}: scales shape {list(scales.array.shape)} does not fit the tensor"
    return None


def _passthrough_slot_problem(entry: TensorEntry, slot: TensorSlot) -> str | None:
    if slot.dtype != SAFETENSORS_DTYPE[entry.dtype] or list(slot.shape) != entry.shape:
        return f"{entry.name}: stored as {slot.dtype}{list(slot.shape)}, the manifest says {entry.dtype}{entry.shape}"
    return None


def _passthrough_digest_problem(read: Callable[[int], bytes | memoryview], entry: TensorEntry, nbytes: int) -> str | None:
    digest = hashlib.sha256(digest_header(entry.dtype, entry.shape))
    left = nbytes
    while left:
        data = read(min(left, CHUNK_BYTES))
        if not data:
            return f"{entry.name}: truncated"
        digest.update(data)
        left -= len(data)
    if "sha256:" + digest.hexdigest() != entry.digest:
        return f"{entry.name}: digest differs from the manifest's"
    return None

