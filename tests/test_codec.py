"""Codec: bit-packing round trips and bit-identity with an independent numpy implementation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from support.reference_codec import ref_digest, ref_pack, ref_reconstruct, ref_unpack
from uc_attest._internal.codec import CodecParams, pack_codes, tensor_digest, unpack_codes
from uc_attest._internal.codec import native
from uc_attest._internal.codec.reconstruct import reconstruct, tensor_bytes
from uc_attest._internal.compress.blockscale import encode_datafree


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("count", [0, 1, 7, 8, 9, 63, 64, 1000])
def test_pack_unpack_round_trip_every_width(bits: int, count: int) -> None:
    rng = np.random.default_rng(bits * 1000 + count)
    codes = rng.integers(0, 1 << bits, size=count, dtype=np.uint8)
    packed = pack_codes(codes, bits)
    assert packed.size == (count * bits + 7) // 8
    np.testing.assert_array_equal(unpack_codes(packed, bits, count), codes)
    # the layout is the documented little-endian stream, as the reference builds it
    np.testing.assert_array_equal(packed, ref_pack(codes, bits)[: packed.size])
    np.testing.assert_array_equal(ref_unpack(packed, bits, count), codes)


def test_known_bit_layout() -> None:
    # codes 1, 2, 3 at 3 bits: stream bits 100 010 110 -> byte0 = 0b10_010_001? LSB first:
    # code0=1 -> bits0..2 = 1,0,0; code1=2 -> 0,1,0; code2=3 -> 1,1,0 => byte0 bits: 1,0,0,0,1,0,1,1
    packed = pack_codes(np.array([1, 2, 3], dtype=np.uint8), 3)
    assert packed.tolist() == [0b11010001, 0b0]


def test_rejects_out_of_range_codes_and_dirty_padding() -> None:
    with pytest.raises(ValueError):
        pack_codes(np.array([8], dtype=np.uint8), 3)
    with pytest.raises(ValueError):
        unpack_codes(np.array([0xFF], dtype=np.uint8), 3, 2)  # bits 6,7 are padding
    with pytest.raises(ValueError):
        unpack_codes(np.zeros(3, dtype=np.uint8), 4, 3)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 9),
    cols=st.integers(1, 150),
    bits=st.integers(2, 8),
    block=st.sampled_from([1, 3, 16, 32, 64, 128]),
    axis=st.integers(0, 1),
    dtype=st.sampled_from(["bfloat16", "float16", "float32"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_reconstruction_bit_identical_to_numpy_reference(rows, cols, bits, block, axis, dtype, seed) -> None:
    rng = np.random.default_rng(seed)
    shape = (rows, cols)
    params = CodecParams(bits=bits, block_size=block, block_axis=axis, dtype=dtype)
    codes = rng.integers(0, 1 << bits, size=shape, dtype=np.uint8)
    codebook = np.sort(rng.standard_normal(1 << bits).astype(np.float32))
    sshape = list(shape)
    sshape[axis] = -(-shape[axis] // block)
    # include subnormal and extreme float16 scales: no flush-to-zero anywhere
    scales = (rng.standard_normal(sshape) * 10.0 ** rng.integers(-7, 4, size=sshape)).astype(np.float16)
    packed = pack_codes(codes, bits)
    ours = reconstruct(packed, codebook, scales, shape, params)
    ref = ref_reconstruct(packed, codebook, scales, shape, bits, block, axis, dtype)
    assert tensor_bytes(ours) == np.ascontiguousarray(ref).astype(ref.dtype.newbyteorder("<")).tobytes()
    assert tensor_digest(ours) == ref_digest(dtype, shape, tensor_bytes(ours))


def test_the_fused_kernel_is_built_by_the_install() -> None:
    # CI installs the package the way a user does; the fast path must be there, not silently absent
    assert native.available()


@pytest.mark.parametrize("use_native", ["1", "avx2", "scalar", "0"], ids=["fused-kernel", "fused-kernel-avx2", "fused-kernel-scalar", "numpy"])
@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("shape,block", [((3, 128), 64), ((2, 4, 96), 32), ((2, 256), 128), ((3, 96), 48), ((5, 64), 8), ((4, 72), 24),
                                         ((1, 40), 64), ((1, 8), 8), ((2, 16), 8)])  # fmt: skip
def test_both_reconstruction_paths_match_the_reference_on_extremes(monkeypatch, use_native, bits, shape, block) -> None:
    """Vector-path (block % 32 or % 16 == 0), whole-group (block % 8 == 0) and generic shapes, every width, values at
    every edge of bf16 rounding; the kernel with its best vector path, capped at AVX2, and with its scalar loops."""
    monkeypatch.setenv("UC_ATTEST_NATIVE", use_native)
    rng = np.random.default_rng(bits * 100 + block)
    params = CodecParams(bits=bits, block_size=block, block_axis=len(shape) - 1)
    codes = rng.integers(0, 1 << bits, size=shape, dtype=np.uint8)
    # ties to even (low half exactly 0x8000), just above and below, -0.0, subnormal, near float32 max
    edges = np.array([0x3F808000, 0x3F818000, 0x3F808001, 0x3F807FFF, 0x80000000, 0x00000001, 0x7F7FFFFF,
                      0xFF7FFFFF, 0x00800000, 0x3F800000], dtype=np.uint32).view(np.float32)  # fmt: skip
    entries = np.concatenate([edges, rng.standard_normal(1 << bits).astype(np.float32)])[: 1 << bits]
    codebook = np.sort(entries)
    sshape = (*shape[:-1], -(-shape[-1] // block))
    scales = np.concatenate([np.array([1.0, -1.0, 65504.0, 6e-8, 0.0], dtype=np.float16),
                             (rng.standard_normal(int(np.prod(sshape)))).astype(np.float16)])[: int(np.prod(sshape))]  # fmt: skip
    scales = scales.reshape(sshape)
    packed = pack_codes(codes, bits)
    with np.errstate(over="ignore"):
        ref = ref_reconstruct(packed, codebook, scales, shape, bits, block, len(shape) - 1, "bfloat16")
    ours = reconstruct(packed, codebook, scales, shape, params)
    assert tensor_bytes(ours) == ref.astype("<u2").tobytes()
    float_params = CodecParams(bits=bits, block_size=block, block_axis=len(shape) - 1, dtype="float32")
    with np.errstate(over="ignore"):
        ref32 = ref_reconstruct(packed, codebook, scales, shape, bits, block, len(shape) - 1, "float32")
    assert tensor_bytes(reconstruct(packed, codebook, scales, shape, float_params)) == ref32.astype("<f4").tobytes()


@pytest.mark.parametrize("use_native", ["1", "0"], ids=["fused-kernel", "numpy"])
def test_both_paths_reject_dirty_padding_and_wrong_sizes(monkeypatch, use_native) -> None:
    monkeypatch.setenv("UC_ATTEST_NATIVE", use_native)
    params = CodecParams(bits=3, block_size=8, block_axis=1)
    scales = np.ones((1, 1), dtype=np.float16)
    codebook = np.linspace(-1, 1, 8).astype(np.float32)
    with pytest.raises(ValueError):
        reconstruct(np.array([0x00, 0xC0], dtype=np.uint8), codebook, scales, (1, 3), params)  # bits 9..15 are padding
    with pytest.raises(ValueError):
        reconstruct(np.zeros(3, dtype=np.uint8), codebook, scales, (1, 3), params)  # 2 bytes expected
    with pytest.raises(ValueError):
        reconstruct(np.zeros(2, dtype=np.uint8), codebook[:4], scales, (1, 3), params)  # 2**bits entries expected


def test_three_dimensional_expert_tensor_matches_reference() -> None:
    rng = np.random.default_rng(7)
    shape = (3, 5, 70)
    params = CodecParams(bits=5, block_size=32, block_axis=2)
    codes = rng.integers(0, 32, size=shape, dtype=np.uint8)
    codebook = np.sort(rng.standard_normal(32).astype(np.float32))
    scales = rng.random((3, 5, 3)).astype(np.float16)
    packed = pack_codes(codes, 5)
    ours = reconstruct(packed, codebook, scales, shape, params)
    ref = ref_reconstruct(packed, codebook, scales, shape, 5, 32, 2, "bfloat16")
    assert tensor_bytes(ours) == ref.astype("<u2").tobytes()


def test_digest_depends_on_dtype_and_shape() -> None:
    t = torch.zeros(4, 6, dtype=torch.bfloat16)
    assert tensor_digest(t) != tensor_digest(t.reshape(6, 4))
    assert tensor_digest(t) != tensor_digest(t.to(torch.float16))


@pytest.mark.parametrize("bits", [2, 4, 5, 8])
def test_datafree_encoding_error_shrinks_with_bits(bits: int) -> None:
    torch.manual_seed(0)
    w = torch.randn(64, 200) * 0.02
    params = CodecParams(bits=bits, block_size=64, block_axis=1)
    enc, codes = encode_datafree(w, params)
    rec = reconstruct(enc.packed_codes, enc.codebook, enc.scales, enc.shape, params)
    rel = ((rec.float() - w).norm() / w.norm()).item()
    assert rel < {2: 0.5, 4: 0.12, 5: 0.06, 8: 0.01}[bits]


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("block", [64, 48])
@pytest.mark.parametrize("cap", ["1", "avx2"])
def test_vector_paths_equal_scalar_loops_on_arbitrary_float32_bit_patterns(monkeypatch, bits, block, cap) -> None:
    """Codebooks and scales drawn as raw float32 bit patterns (NaNs, infinities, subnormals, every exponent): each
    vector path this CPU has (native.vector_path; block 48 is AVX2-only) gives the scalar loops' bits."""
    rng = np.random.default_rng(bits * 1000 + block)
    rows, cols = 7, 8 * block
    params = CodecParams(bits=bits, block_size=block, block_axis=1)
    packed = pack_codes(rng.integers(0, 1 << bits, size=(rows, cols), dtype=np.uint8), bits)
    codebook = rng.integers(0, 1 << 32, size=1 << bits, dtype=np.uint64).astype(np.uint32).view(np.float32)
    scales = rng.integers(0, 1 << 32, size=(rows, cols // block), dtype=np.uint64).astype(np.uint32).view(np.float32)
    monkeypatch.setenv("UC_ATTEST_NATIVE", cap)
    with np.errstate(over="ignore", invalid="ignore"):
        vector = native.decode(packed, codebook, scales, (rows, cols), params)
    monkeypatch.setenv("UC_ATTEST_NATIVE", "scalar")
    with np.errstate(over="ignore", invalid="ignore"):
        scalar = native.decode(packed, codebook, scales, (rows, cols), params)
    assert vector.tobytes() == scalar.tobytes()


def test_the_vector_path_names_follow_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("UC_ATTEST_NATIVE", "scalar")
    assert native.vector_path() == "scalar"
    monkeypatch.setenv("UC_ATTEST_NATIVE", "avx2")
    assert native.vector_path() in ("avx2", "scalar")
    monkeypatch.setenv("UC_ATTEST_NATIVE", "1")
    assert native.vector_path() in native.VECTOR_PATHS
