"""An independent numpy implementation of the codec, written from docs/FORMAT.md.

It shares no code with uc_attest.codec: unpacking bit by bit, float32 multiply in
numpy, round-to-nearest-even to bfloat16 by integer arithmetic on the bit pattern.
The tests demand bit-identity between the two.
"""

from __future__ import annotations

import hashlib

import numpy as np


def ref_unpack(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    stream = np.unpackbits(packed.astype(np.uint8), bitorder="little")
    out = np.zeros(count, dtype=np.uint16)
    for bit in range(bits):
        out |= stream[bit : count * bits : bits].astype(np.uint16) << bit
    return out.astype(np.uint8)


def ref_pack(codes: np.ndarray, bits: int) -> np.ndarray:
    codes = codes.reshape(-1).astype(np.uint16)
    stream = np.zeros(codes.size * bits, dtype=np.uint8)
    for bit in range(bits):
        stream[bit::bits] = (codes >> bit) & 1
    return np.packbits(stream, bitorder="little")


def f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    is_nan = np.isnan(x)
    rounding = 0x7FFF + ((u >> 16) & 1)
    out = ((u + rounding) >> 16).astype(np.uint16)
    out[is_nan] = ((u[is_nan] >> 16) | 0x40).astype(np.uint16)
    return out


def ref_reconstruct(packed, codebook, scales, shape, bits, block_size, block_axis, dtype):
    codes = ref_unpack(packed, bits, int(np.prod(shape))).reshape(shape)
    vals = np.asarray(codebook, dtype=np.float32)[codes]
    sc = np.asarray(scales, dtype=np.float16).astype(np.float32)
    idx = np.arange(shape[block_axis]) // block_size
    sc_full = np.take(sc, idx, axis=block_axis)
    prod = (vals * sc_full).astype(np.float32)
    if dtype == "bfloat16":
        return f32_to_bf16_bits(prod)
    if dtype == "float16":
        return prod.astype(np.float16)
    return prod


def ref_digest(dtype: str, shape, raw: bytes) -> str:
    header = b"uc-attest/tensor-digest/v1\n" + dtype.encode() + b"\n" + ",".join(map(str, shape)).encode() + b"\n"
    return "sha256:" + hashlib.sha256(header + raw).hexdigest()
