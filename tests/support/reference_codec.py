"""An independent numpy implementation of the codec, written from docs/FORMAT.md.

It shares no code with uc_attest._internal.codec: unpacking bit by bit, float32 multiply in
numpy, round-to-nearest-even to bfloat16 by integer arithmetic on the bit pattern.
The tests demand bit-identity between the two.
"""

from __future__ import annotations

import hashlib
import struct

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


def ref_signs(seed: int, count: int) -> np.ndarray:
    """+1/-1 per position from the SHA-256 counter stream of docs/FORMAT.md (bit j: byte j//8, bit j%8)."""
    out = np.ones(count, dtype=np.float32)
    for j in range(count):
        block = hashlib.sha256(b"uc-attest/hadamard-signs/v1\n" + struct.pack("<QQ", seed, j // 256)).digest()
        if (block[(j % 256) // 8] >> (j % 8)) & 1:
            out[j] = -1.0
    return out


def ref_hadamard_inverse(prod: np.ndarray, axis: int, size: int, seed: int) -> np.ndarray:
    """The transform of docs/FORMAT.md written as index arithmetic: partner of i at stage h is i XOR h."""
    x = np.moveaxis(prod.astype(np.float32), axis, -1).copy()
    n = x.shape[-1]
    idx = np.arange(n)
    h = 1
    while h < size:
        low = idx[(idx & h) == 0]  # within a run of 2h, the first h take the sum
        a, b = x[..., low].copy(), x[..., low ^ h].copy()
        with np.errstate(over="ignore", invalid="ignore"):
            x[..., low] = (a + b).astype(np.float32)
            x[..., low ^ h] = (a - b).astype(np.float32)
        h <<= 1
    m = size.bit_length() - 1
    k = -(-m // 2)
    x = (x * np.float32(1.0 / (1 << k))).astype(np.float32)
    x = (x * ref_signs(seed, n)).astype(np.float32)
    bits = x.view(np.uint32)
    bits[np.isnan(x)] = 0x7FC00000
    return np.moveaxis(x, -1, axis)


def ref_reconstruct(packed, codebook, scales, shape, bits, block_size, block_axis, dtype, transform=None):
    """``transform``: None or (size, seed) of the hadamard-sign-v1 incoherence transform."""
    codes = ref_unpack(packed, bits, int(np.prod(shape))).reshape(shape)
    vals = np.asarray(codebook, dtype=np.float32)[codes]
    sc = np.asarray(scales, dtype=np.float16).astype(np.float32)
    idx = np.arange(shape[block_axis]) // block_size
    sc_full = np.take(sc, idx, axis=block_axis)
    with np.errstate(over="ignore"):
        prod = (vals * sc_full).astype(np.float32)
    if transform is not None:
        prod = ref_hadamard_inverse(prod, block_axis, *transform)
    if dtype == "bfloat16":
        return f32_to_bf16_bits(prod)
    if dtype == "float16":
        return prod.astype(np.float16)
    return prod


def ref_digest(dtype: str, shape, raw: bytes) -> str:
    header = b"uc-attest/tensor-digest/v1\n" + dtype.encode() + b"\n" + ",".join(map(str, shape)).encode() + b"\n"
    return "sha256:" + hashlib.sha256(header + raw).hexdigest()
