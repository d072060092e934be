"""Bit-packing of b-bit codes (2 <= b <= 8) into bytes, little-endian.

Layout: code k occupies stream bits [k*b, (k+1)*b); stream bit i is bit (i % 8)
(least significant first) of byte i // 8; the code's own least significant bit
comes first. The packed length is ceil(n*b / 8) bytes and unused high bits of the
last byte are zero (a reader rejects anything else, so a byte has one meaning).

Vectorised: eight codes fill exactly b bytes, so the stream is viewed as rows of
b bytes and each of the eight code positions is extracted from at most two
bytes with a fixed shift.
"""

from __future__ import annotations

import numpy as np


def packed_nbytes(count: int, bits: int) -> int:
    """Number of bytes that ``count`` codes of ``bits`` bits occupy."""
    _check_bits(bits)
    return (count * bits + 7) // 8


def _check_bits(bits: int) -> None:
    if not 2 <= bits <= 8:
        raise ValueError(f"bits must be in 2..8, got {bits}")


_SHIFTS_CACHE: dict[int, np.ndarray] = {}


def _shifts(bits: int) -> np.ndarray:
    if bits not in _SHIFTS_CACHE:
        _SHIFTS_CACHE[bits] = (np.arange(8, dtype=np.uint64) * np.uint64(bits)).astype(np.uint64)
    return _SHIFTS_CACHE[bits]


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack a flat array of integer codes (< 2**bits) into a uint8 array."""
    _check_bits(bits)
    flat = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1)
    if flat.size and int(flat.max()) >= (1 << bits):
        raise ValueError(f"code out of range for {bits} bits")
    n = flat.size
    groups = (n + 7) // 8
    padded = np.zeros(groups * 8, dtype=np.uint64)
    padded[:n] = flat
    words = np.bitwise_or.reduce(padded.reshape(groups, 8) << _shifts(bits), axis=1)
    as_bytes = words.astype("<u8").view(np.uint8).reshape(groups, 8)[:, :bits]
    return np.ascontiguousarray(as_bytes).reshape(-1)[: packed_nbytes(n, bits)].copy()


def unpack_codes(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`: return ``count`` uint8 codes.

    Raises ValueError when the byte count is wrong or padding bits are set, so
    that a packed stream has exactly one valid encoding.
    """
    _check_bits(bits)
    data = np.ascontiguousarray(packed, dtype=np.uint8).reshape(-1)
    expected = packed_nbytes(count, bits)
    if data.size != expected:
        raise ValueError(f"packed codes have {data.size} bytes, expected {expected}")
    tail_bits = (count * bits) % 8
    if tail_bits and data.size and int(data[-1]) >> tail_bits:
        raise ValueError("non-zero padding bits after the last code")
    groups = (count + 7) // 8
    full = min(data.size // bits, groups)  # whole groups of 8 codes = ``bits`` bytes
    out = np.empty((groups, 8), dtype=np.uint8)
    grid = data[: full * bits].reshape(full, bits)
    mask = np.uint16((1 << bits) - 1)
    low = np.empty(full, dtype=np.uint16)
    high = np.empty(full, dtype=np.uint16)
    for k in range(8):  # code k of every group: at most two bytes, a fixed shift
        first_bit = k * bits
        byte, shift = divmod(first_bit, 8)
        np.copyto(low, grid[:, byte], casting="unsafe")
        if shift + bits > 8:
            np.copyto(high, grid[:, byte + 1], casting="unsafe")
            np.left_shift(high, 8, out=high)
            np.bitwise_or(low, high, out=low)
        np.right_shift(low, shift, out=low)
        np.bitwise_and(low, mask, out=low)
        np.copyto(out[:full, k], low, casting="unsafe")
    if full < groups:  # the last, partial group
        tail = int.from_bytes(data[full * bits :].tobytes(), "little")
        out[full] = [(tail >> (k * bits)) & ((1 << bits) - 1) for k in range(8)]
    return out.reshape(-1)[:count]
