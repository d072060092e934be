"""A strict safetensors parser over bytes already in memory.

The pack reader hashes a file and parses it from the same buffer (read once), so
a file swapped between hashing and loading cannot slip through. This parser
refuses everything the format does not allow: absurd header lengths, duplicate
keys, unknown dtypes, shapes that do not match byte counts, overlapping, out of
range or unsorted offsets, and holes in the data region.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from .strict_json import loads_strict

MAX_HEADER_BYTES = 100 * 1024 * 1024

DTYPE_SIZES: dict[str, int] = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip



class SafetensorsFormatError(ValueError):
    """The bytes are not a well-formed safetensors file."""


@dataclass(frozen=True)
class TensorSlot:
    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute offset in the buffer
    end: int


@dataclass(frozen=True)
class SafetensorsView:
    """Parsed header plus the buffer the tensors live in."""

    buffer: memoryview
    tensors: dict[str, TensorSlot]
    metadata: dict[str, str]

    def raw(self, name: str) -> memoryview:
        slot = self.tensors[name]
        return self.buffer[slot.start : slot.end]


def read_header_length(prefix: bytes | bytearray, file_size: int, what: str) -> int:
    if len(prefix) < 8 or file_size < 8:
        raise SafetensorsFormatError(f"{what}: too short for a safetensors header")
    (header_len,) = struct.unpack("<Q", prefix[:8])
    if header_len > MAX_HEADER_BYTES or header_len > file_size - 8:
        raise SafetensorsFormatError(f"{what}: header length {header_len} exceeds the file")
    return header_len


def parse_header(header_bytes: bytes, file_size: int, what: str) -> tuple[list[TensorSlot], dict[str, str]]:
    """Validate a header against the file size; slots carry absolute offsets, sorted by offset."""
    header_len = len(header_bytes)
    if not header_bytes.startswith(b"{"):
        raise SafetensorsFormatError(f"{what}: header is not a JSON object")
    try:
        header = loads_strict(header_bytes.rstrip(b" "), what)
    except Exception as exc:  # UnreadableInputError, re-typed as a format error
        raise SafetensorsFormatError(str(exc)) from exc
    if not isinstance(header, dict):
        raise SafetensorsFormatError(f"{what}: header is not a JSON object")
    base = 8 + header_len
    data_len = file_size - base
    metadata_raw = header.pop("__metadata__", {})
    if not isinstance(metadata_raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata_raw.items()
    ):
        raise SafetensorsFormatError(f"{what}: __metadata__ must map strings to strings")
    slots: list[TensorSlot] = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise SafetensorsFormatError(f"{what}: tensor {name!r} has a malformed entry")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
            raise SafetensorsFormatError(f"{what}: tensor {name!r} has unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in shape
        ):
            raise SafetensorsFormatError(f"{what}: tensor {name!r} has a bad shape")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        ):
            raise SafetensorsFormatError(f"{what}: tensor {name!r} has bad data_offsets")
        start, end = offsets
        if not 0 <= start <= end <= data_len:
            raise SafetensorsFormatError(f"{what}: tensor {name!r} offsets [{start}, {end}] are out of range")
        if end - start != math.prod(shape) * DTYPE_SIZES[dtype]:
            raise SafetensorsFormatError(f"{what}: tensor {name!r} byte count does not match its shape")
        slots.append(TensorSlot(name, dtype, tuple(shape), base + start, base + end))
    slots.sort(key=lambda s: (s.start, s.end))
    cursor = base
    for slot in slots:
        if slot.start != cursor:
            kind = "overlap" if slot.start < cursor else "a hole"
            raise SafetensorsFormatError(f"{what}: tensor data has {kind} at tensor {slot.name!r}")
        cursor = slot.end
    if cursor != file_size:
        raise SafetensorsFormatError(f"{what}: {file_size - cursor} trailing bytes after the last tensor")
    return slots, dict(metadata_raw)


def parse_safetensors(data: bytes | bytearray | memoryview, what: str = "safetensors file") -> SafetensorsView:
    buf = memoryview(data)
    header_len = read_header_length(bytes(buf[:8]), len(buf), what)
    slots, metadata = parse_header(bytes(buf[8 : 8 + header_len]), len(buf), what)
    return SafetensorsView(buf, {s.name: s for s in slots}, metadata)
