"""A safetensors file written tensor by tensor, byte-identical to ``safetensors.torch.save``.

Why: a pack shard holds up to 256 MiB of tensors; gathering them in memory and
serialising at close (``save`` builds a second, whole copy) made the peak memory
of ``uc compress`` grow with the shard size, twice over. Here each tensor's
bytes go to a spool file as they arrive; at close the header is written and the
data copied from the spool in bounded chunks into a temporary file, hashed as
they pass, and the file renamed into place, so a failure leaves no half-written
shard under the final name.

The bytes must be exactly those ``save(tensors, metadata=...)`` writes, so that
packs stay reproducible and packs written before this module are unchanged:
the data is ordered by dtype (the safetensors library's dtype order, widest
first) then by name, the header is compact JSON in that order after the
``__metadata__`` entry, padded with spaces to a multiple of 8 bytes.
tests/pack/test_safetensors_stream.py compares the bytes with the library's on every
dtype, on shapes with zero and one dimension, and on non-ASCII names.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

# The closed set of dtypes a shard may hold, in the safetensors library's own dtype order (its Rust enum's), lowest
# first; ``save`` orders the data by this rank, highest first, then by name. A dtype outside this table is refused.
_DTYPE_ORDER: tuple[tuple[str, torch.dtype], ...] = (
    ("BOOL", torch.bool),
    ("U8", torch.uint8),
    ("I8", torch.int8),
    ("F8_E5M2", torch.float8_e5m2),
    ("F8_E4M3", torch.float8_e4m3fn),
    ("F8_E4M3FNUZ", torch.float8_e4m3fnuz),
    ("F8_E5M2FNUZ", torch.float8_e5m2fnuz),
    ("I16", torch.int16),
    ("U16", torch.uint16),
    ("F16", torch.float16),
    ("BF16", torch.bfloat16),
    ("I32", torch.int32),
    ("U32", torch.uint32),
    ("F32", torch.float32),
    ("C64", torch.complex64),
    ("F64", torch.float64),
    ("I64", torch.int64),
    ("U64", torch.uint64),
)
SAFETENSORS_DTYPES: dict[torch.dtype, str] = {dtype: name for name, dtype in _DTYPE_ORDER}
_RANK: dict[str, int] = {name: rank for rank, (name, _) in enumerate(_DTYPE_ORDER)}
COPY_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class _Spooled:
    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int  # where its bytes start in the spool
    nbytes: int


@dataclass(frozen=True)
class WrittenFile:
    size: int
    sha256: str


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The tensor's bytes in memory order (little-endian, as safetensors stores them), without a copy when contiguous."""
    flat = tensor.detach().contiguous().reshape(-1)
    if flat.dtype == torch.bool:
        flat = flat.view(torch.uint8)
    return flat.view(torch.uint8).numpy().data.cast("B")


class StreamingSafetensorsFile:
    """One safetensors file under construction: ``add`` spools a tensor's bytes, ``close`` writes the file.

    The spool and the temporary file sit beside the target (dot-prefixed) and
    are removed by ``close`` and ``discard``.
    """

    def __init__(self, path: Path, metadata: dict[str, str] | None = None) -> None:
        self.path = path
        self.metadata = dict(metadata) if metadata is not None else None
        self._spool_path = path.with_name(f".{path.name}.spool")
        self._spool = open(self._spool_path, "wb")
        self._entries: dict[str, _Spooled] = {}
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, name: str, tensor: torch.Tensor) -> None:
        if name in self._entries:
            raise ValueError(f"{name}: already in {self.path.name}")
        dtype = SAFETENSORS_DTYPES.get(tensor.dtype)
        if dtype is None:
            raise ValueError(f"{name}: dtype {tensor.dtype} cannot be stored in a pack shard")
        data = tensor_bytes(tensor)
        self._spool.write(data)
        self._entries[name] = _Spooled(name, dtype, tuple(tensor.shape), self.nbytes, len(data))
        self.nbytes += len(data)

    def _header(self, order: list[_Spooled]) -> bytes:
        header: dict[str, object] = {}
        if self.metadata is not None:
            header["__metadata__"] = self.metadata
        start = 0
        for entry in order:
            header[entry.name] = {"dtype": entry.dtype, "shape": list(entry.shape), "data_offsets": [start, start + entry.nbytes]}
            start += entry.nbytes
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        text += b" " * (-len(text) % 8)
        return struct.pack("<Q", len(text)) + text

    def close(self) -> WrittenFile:
        """Write header and data (in safetensors order) to a temporary file, fsync, rename into place; size and SHA-256."""
        self._spool.close()
        order = sorted(self._entries.values(), key=lambda e: (-_RANK[e.dtype], e.name.encode("utf-8")))
        digest = hashlib.sha256()
        partial = self.path.with_name(f".{self.path.name}.partial")
        try:
            with open(self._spool_path, "rb") as spool, open(partial, "wb") as out:
                head = self._header(order)
                out.write(head)
                digest.update(head)
                size = len(head)
                for entry in order:
                    spool.seek(entry.offset)
                    left = entry.nbytes
                    while left:
                        chunk = spool.read(min(COPY_CHUNK, left))
                        if not chunk:
                            raise OSError(f"{self._spool_path}: ended early")
                        out.write(chunk)
                        digest.update(chunk)
                        left -= len(chunk)
                        size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, self.path)
        finally:
            partial.unlink(missing_ok=True)
            self._spool_path.unlink(missing_ok=True)
        return WrittenFile(size=size, sha256=digest.hexdigest())

    def discard(self) -> None:
        self._spool.close()
        self._spool_path.unlink(missing_ok=True)
