"""Incoherence processing: the seeded random-sign block Hadamard transform of the canonical reconstruction (numpy).

Why: a weight matrix with a few large entries per row wastes a shared
codebook's levels on them; rotating each row by a random orthogonal matrix
spreads every entry's energy over the whole block, so the rotated weights are
close to Gaussian and code with less error (QuIP#, QuaRot). A Hadamard
matrix with random signs is such a rotation that needs no stored matrix (a seed
gives the signs) and whose inverse is only additions and subtractions, so it
can join the canonical reconstruction without losing bit-exactness: every
step below is an elementwise IEEE-754 binary32 operation in a fixed order, no
reduction, no fused multiply-add, so numpy, the torch path
(``incoherence_torch``), any CPU and any GPU produce the same bits.

For a tensor whose codec names ``transform = {kind: hadamard-sign-v1, size: b,
seed: s}`` (b = 2**m divides the width n of the block axis), after the float32
products ``x = codebook[code] * scale`` and before the one rounding:

1. butterfly, for h = 1, 2, 4, ..., b/2 in this order: within every run of b
   consecutive elements along the block axis, for every pair (i, i + h) with
   i mod 2h < h: ``x[i], x[i+h] = x[i] + x[i+h], x[i] - x[i+h]`` (float32);
2. ``x = x * 2**-ceil(m/2)`` (float32; a power of two, exact unless the result
   is subnormal, where IEEE rounding still defines it);
3. ``x = x * sign[j]`` with sign[j] in {+1.0, -1.0} for position j along the
   block axis (exact);
4. every NaN becomes the positive quiet NaN 0x7FC00000 (a sum of infinities
   of opposite signs is NaN, whose sign and payload IEEE leaves open);

then the usual rounding to the reconstruction dtype. The signs are the bits of
SHA-256(DOMAIN || seed as 8 bytes little-endian || counter as 8 bytes
little-endian), counter = 0, 1, ..., concatenated: sign[j] = -1 where bit
``j mod 8`` (LSB first) of byte ``j div 8`` of that stream is set.

In matrix form each row w (along the block axis) is ``w = 2**-ceil(m/2) * D * H_b v``
blockwise, with H_b the natural-order (Sylvester) Hadamard matrix and D the
signs; the encoder codes ``v = 2**-floor(m/2) * H_b D w`` (see
``incoherence_torch.forward_transform``). For even m this is orthonormal.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

from . import native
from .params import CodecParams, HadamardTransform

SIGN_DOMAIN = b"uc-attest/hadamard-signs/v1\n"
CANONICAL_NAN_F32 = np.uint32(0x7FC00000)


def log2_size(size: int) -> int:
    """m with size == 2**m (the params validator guarantees a power of two)."""
    return size.bit_length() - 1


def inverse_scale_exponent(size: int) -> int:
    """k of step 2's factor 2**-k: ceil(m / 2)."""
    return (log2_size(size) + 1) // 2


@lru_cache(maxsize=64)
def _sign_bits(seed: int, count: int) -> bytes:
    stream = bytearray()
    counter = 0
    while len(stream) * 8 < count:
        stream += hashlib.sha256(SIGN_DOMAIN + seed.to_bytes(8, "little") + counter.to_bytes(8, "little")).digest()
        counter += 1
    return bytes(stream)


def signs(seed: int, count: int) -> np.ndarray:
    """The ``count`` float32 signs (+1.0 or -1.0) of ``seed`` (a private copy)."""
    bits = np.unpackbits(np.frombuffer(_sign_bits(seed, count), dtype=np.uint8), bitorder="little")[:count]
    return np.where(bits == 1, np.float32(-1.0), np.float32(1.0)).astype(np.float32)


def check_transform(transform: HadamardTransform, width: int) -> None:
    """ValueError unless the transform's size divides ``width`` (the block axis length)."""
    if width % transform.size:
        raise ValueError(f"hadamard size {transform.size} does not divide the block axis length {width}")


def inverse_transform(values: np.ndarray, params: CodecParams) -> np.ndarray:
    """Steps 1-4 on float32 products of ``params``' tensor (any shape), in place where possible; returns float32."""
    transform = params.transform
    assert transform is not None
    axis = params.block_axis
    width = values.shape[axis]
    check_transform(transform, width)
    x = np.ascontiguousarray(np.moveaxis(values.astype(np.float32, copy=False), axis, -1))
    if x.size == 0:
        return np.moveaxis(x, -1, axis)
    b = transform.size
    scale = np.float32(2.0 ** -inverse_scale_exponent(b))
    kernel = native.hadamard_kernel()
    if kernel is not None:  # the same four steps in C, run by run (numpy's small strides cost ~1000x more)
        kernel(x.reshape(-1), signs(transform.seed, width), b, width, float(scale))
        return np.moveaxis(x, -1, axis)
    runs = x.reshape(-1, b)  # every run of b consecutive elements along the axis
    with np.errstate(over="ignore", invalid="ignore"):  # infinities and NaN are defined IEEE results
        h = 1
        while h < b:
            pairs = runs.reshape(runs.shape[0], b // (2 * h), 2, h)
            low, high = pairs[:, :, 0, :], pairs[:, :, 1, :]
            total = low + high
            np.subtract(low, high, out=high)
            low[...] = total
            h *= 2
        np.multiply(x, scale, out=x)
        np.multiply(x, signs(transform.seed, width), out=x)
    nan = np.isnan(x)
    if nan.any():
        x.view(np.uint32)[nan] = CANONICAL_NAN_F32
    return np.moveaxis(x, -1, axis)
