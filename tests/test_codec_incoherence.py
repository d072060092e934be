"""The incoherence transform of the canonical reconstruction: three implementations, one set of bits.

The numpy definition (uc_attest._internal.codec.incoherence, behind both the fused
kernel's and the numpy reconstruction path), the torch path
(incoherence_torch) and the independent reference (tests/support/reference_codec.py,
written from docs/FORMAT.md) must agree bit for bit, and all of them must give
the golden digest computed once and written down here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from support.reference_codec import ref_digest, ref_reconstruct, ref_signs
from uc_attest._internal.codec import CodecParams, pack_codes
from uc_attest._internal.codec.incoherence import signs
from uc_attest._internal.codec.incoherence_torch import _butterfly, _hadamard_encoder, forward_transform, inverse_transform, transform_hessian
from uc_attest._internal.codec.params import HadamardTransform
from uc_attest._internal.codec.reconstruct import expand_scales, reconstruct, tensor_bytes, tensor_digest
from uc_attest._internal.pack.manifest import PackManifest
from uc_attest._internal.pack.strict_json import dumps_canonical
from uc_attest._internal.pack.verify import verify_pack

GOLDEN_PACK_V10 = Path(__file__).parent / "golden" / "pack-v1.0"


def _state(seed: int, shape: tuple[int, ...], bits: int, block: int, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 1 << bits, size=shape, dtype=np.uint8)
    codebook = np.sort(rng.standard_normal(1 << bits).astype(np.float32))
    sshape = list(shape)
    sshape[axis] = -(-shape[axis] // block)
    scales = (rng.standard_normal(sshape) * 10.0 ** rng.integers(-6, 3, size=sshape)).astype(np.float16)
    return pack_codes(codes, bits), codebook, scales


def _torch_reconstruction(packed: np.ndarray, codebook: np.ndarray, scales: np.ndarray, shape: tuple[int, ...],
                          params: CodecParams) -> bytes:  # fmt: skip
    """The canonical rule written with torch operations only: products, inverse transform, one rounding."""
    from uc_attest._internal.codec import unpack_codes

    codes = torch.from_numpy(unpack_codes(packed, params.bits, int(np.prod(shape))).reshape(shape).astype(np.int64))
    products = torch.from_numpy(codebook)[codes] * expand_scales(torch.from_numpy(scales), shape, params)
    values = inverse_transform(products, params)
    out = values.to(torch.bfloat16) if params.dtype == "bfloat16" else values.to(torch.float32)
    return tensor_bytes(out)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 6),
    runs=st.integers(1, 4),
    log_size=st.integers(1, 7),
    bits=st.integers(2, 8),
    block=st.sampled_from([8, 16, 32, 64]),
    axis=st.integers(0, 1),
    dtype=st.sampled_from(["bfloat16", "float16", "float32"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_every_path_is_bit_identical_to_the_reference(rows, runs, log_size, bits, block, axis, dtype, seed) -> None:
    size = 1 << log_size
    shape = (runs * size, rows) if axis == 0 else (rows, runs * size)
    params = CodecParams(bits=bits, block_size=block, block_axis=axis, dtype=dtype,
                         transform=HadamardTransform(size=size, seed=seed))  # fmt: skip
    packed, codebook, scales = _state(seed, shape, bits, block, axis)
    ref = ref_reconstruct(packed, codebook, scales, shape, bits, block, axis, dtype, transform=(size, seed))
    ref_bytes = np.ascontiguousarray(ref).astype(ref.dtype.newbyteorder("<")).tobytes()
    ours = reconstruct(packed, codebook, scales, shape, params)
    assert tensor_bytes(ours) == ref_bytes
    if dtype != "float16":  # torch's float16 conversion is the same RNE; bf16 and float32 are what packs use
        assert _torch_reconstruction(packed, codebook, scales, shape, params) == ref_bytes


@pytest.mark.parametrize("use_native", ["1", "scalar", "0"], ids=["fused-kernel", "fused-kernel-scalar", "numpy"])
def test_overflow_and_nan_are_canonical_on_every_path(monkeypatch, use_native) -> None:
    """Products near float32's maximum overflow in the butterfly (inf - inf = NaN): every path writes the same bits."""
    monkeypatch.setenv("UC_ATTEST_NATIVE", use_native)
    shape, bits = (3, 16), 3
    params = CodecParams(bits=bits, block_size=8, block_axis=1, dtype="float32", transform=HadamardTransform(size=16, seed=5))
    codebook = np.array([-3.4e38, -1e38, -1.0, 0.0, 1e-45, 1.0, 1e38, 3.4e38], dtype=np.float32)
    codes = np.tile(np.array([0, 7, 7, 0, 1, 6, 2, 5, 3, 4, 7, 7, 0, 0, 5, 5], dtype=np.uint8), (3, 1))
    codes[1] = np.arange(16) % 8
    scales = np.array([[65504.0, 1.0], [1.0, 6e-8], [-2.0, 0.5]], dtype=np.float16)
    packed = pack_codes(codes, bits)
    with np.errstate(over="ignore", invalid="ignore"):
        ref = ref_reconstruct(packed, codebook, scales, shape, bits, 8, 1, "float32", transform=(16, 5))
    assert np.isnan(ref).any() and np.isinf(ref).any()
    ours = reconstruct(packed, codebook, scales, shape, params)
    assert tensor_bytes(ours) == ref.astype("<f4").tobytes()
    assert _torch_reconstruction(packed, codebook, scales, shape, params) == ref.astype("<f4").tobytes()
    nan_bits = ours.numpy().view(np.uint32)[np.isnan(ours.numpy())]
    assert set(nan_bits.tolist()) == {0x7FC00000}


# Golden vectors: fixed state, digest computed once (by the reference, checked against both paths) and frozen here.
GOLDEN = {
    # (shape, bits, block, axis, size, seed, dtype): digest
    ((4, 192), 5, 64, 1, 64, 20261207, "bfloat16"): "sha256:41ca10a50c82231538196eb225bf8f6e439af34d480be284b27327b24a810dda",
    ((256, 3), 4, 32, 0, 128, 1, "bfloat16"): "sha256:714c77dc84935f5ffdcf61633ca9bcfd5b941f336ea66eaf97029c6859a3273c",
    ((2, 3, 96), 6, 32, 2, 32, 77, "float32"): "sha256:833768d86df3a5e869c07dea79544966f3ec80363ed148216193b362af547002",
}


@pytest.mark.parametrize("case", list(GOLDEN), ids=[f"{c[0]}-{c[6]}-size{c[4]}" for c in GOLDEN])
@pytest.mark.parametrize("use_native", ["1", "0"], ids=["fused-kernel", "numpy"])
def test_golden_vectors(monkeypatch, use_native, case) -> None:
    monkeypatch.setenv("UC_ATTEST_NATIVE", use_native)
    shape, bits, block, axis, size, seed, dtype = case
    params = CodecParams(bits=bits, block_size=block, block_axis=axis, dtype=dtype, transform=HadamardTransform(size=size, seed=seed))
    packed, codebook, scales = _state(seed, shape, bits, block, axis)
    ref = ref_reconstruct(packed, codebook, scales, shape, bits, block, axis, dtype, transform=(size, seed))
    ref_bytes = np.ascontiguousarray(ref).astype(ref.dtype.newbyteorder("<")).tobytes()
    ours = reconstruct(packed, codebook, scales, shape, params)
    assert tensor_digest(ours) == ref_digest(dtype, shape, ref_bytes) == GOLDEN[case]
    assert ref_digest(dtype, shape, _torch_reconstruction(packed, codebook, scales, shape, params)) == GOLDEN[case]


def test_golden_signs() -> None:
    """The first signs of seed 0 and seed 1, as the SHA-256 counter stream defines them (also past one digest)."""
    assert np.array_equal(signs(0, 300), ref_signs(0, 300))
    assert np.array_equal(signs(12345, 1000), ref_signs(12345, 1000))
    assert "".join("-" if s < 0 else "+" for s in signs(0, 16)) == "-+-+++++++++--+-"


def test_the_encoder_side_inverts_the_canonical_side_and_keeps_the_hessian_error() -> None:
    """v = forward(w) reconstructs to w (up to float32 rounding); v H' v^T == w H w^T for H' = transform_hessian(H)."""
    gen = torch.Generator().manual_seed(0)
    for size in (2, 8, 64, 128):
        transform = HadamardTransform(size=size, seed=size)
        params = CodecParams(bits=5, block_size=64, block_axis=1, transform=transform)
        w = torch.randn(5, 384, generator=gen)
        v = forward_transform(w, transform, 1)
        assert torch.allclose(inverse_transform(v, params), w, atol=1e-5)
        x = torch.randn(384, 400, generator=gen, dtype=torch.float64)
        h = x @ x.t()
        d = torch.randn(5, 384, generator=gen, dtype=torch.float64)
        dv = forward_transform(d, transform, 1).to(torch.float64)
        assert float(((d @ h) * d).sum()) == pytest.approx(float(((dv @ transform_hessian(h, transform)) * dv).sum()), rel=1e-5)


@pytest.mark.parametrize("size", [1, 2, 8, 64, 128, 512, 1024])
def test_the_encoders_matrix_form_is_the_butterflys_transform(size: int) -> None:
    x = torch.randn(5, 3 * size, dtype=torch.float64, generator=torch.Generator().manual_seed(size))
    assert torch.allclose(_hadamard_encoder(x, size), _butterfly(x, size), rtol=0, atol=1e-12 * size)


def test_params_refuse_a_size_that_is_not_a_power_of_two_or_does_not_divide() -> None:
    for size in (0, 1, 3, 96, 1 << 16):
        with pytest.raises(ValidationError):
            HadamardTransform(size=size, seed=0)
    with pytest.raises(ValidationError):
        HadamardTransform(size=8, seed=-1)
    params = CodecParams(bits=4, block_size=8, block_axis=1, transform=HadamardTransform(size=16, seed=0))
    packed, codebook, scales = _state(0, (2, 24), 4, 8, 1)
    with pytest.raises(ValueError, match="does not divide"):
        reconstruct(packed, codebook, scales, (2, 24), params)


def test_a_format_1_0_pack_still_verifies_and_keeps_its_manifest_bytes(tmp_path: Path) -> None:
    """A pack written before the transform existed (by that version's code) verifies, and its manifest re-serialises
    to the same bytes: CodecParams adds no ``transform`` key when there is none."""
    pack = tmp_path / "old.ucpack"
    shutil.copytree(GOLDEN_PACK_V10, pack)
    raw = (pack / "ucpack.json").read_bytes()
    manifest = PackManifest.model_validate(json.loads(raw))
    assert manifest.format_version == "1.0" and not manifest.uses_transform()
    assert dumps_canonical(manifest.model_dump(mode="json")) == raw
    verified = verify_pack(pack, progress=False)
    assert verified.report.ok, verified.report.failures


def _manifest_with_transform(version: str) -> dict:
    raw = json.loads((GOLDEN_PACK_V10 / "ucpack.json").read_bytes())
    raw["format_version"] = version
    entry = next(t for t in raw["tensors"] if t["kind"] == "quantized" and t["shape"][t["codec"]["block_axis"]] % 64 == 0)
    entry["codec"]["transform"] = {"kind": "hadamard-sign-v1", "size": 64, "seed": 1}
    return raw


def test_a_transform_needs_format_1_1_and_a_size_that_divides() -> None:
    with pytest.raises(ValidationError, match="1.1"):
        PackManifest.model_validate(_manifest_with_transform("1.0"))
    assert PackManifest.model_validate(_manifest_with_transform("1.1")).uses_transform()
    raw = _manifest_with_transform("1.1")
    next(t for t in raw["tensors"] if "transform" in (t.get("codec") or {}))["codec"]["transform"]["size"] = 128
    with pytest.raises(ValidationError, match="does not divide"):
        PackManifest.model_validate(raw)
    raw = _manifest_with_transform("1.1")
    next(t for t in raw["tensors"] if "transform" in (t.get("codec") or {}))["codec"]["transform"]["kind"] = "hadamard-v0"
    with pytest.raises(ValidationError):
        PackManifest.model_validate(raw)


@pytest.mark.parametrize(("width", "size", "axis"), [(1536, 256, 1), (576, 64, 0), (48, 16, 1)])
def test_tuning_inverse_is_the_canonical_inverse_up_to_float32_rounding(width: int, size: int, axis: int) -> None:
    """Block tuning's matrix-product inverse: the canonical values within a few float32 ulps, and the same linear map's gradient."""
    from uc_attest._internal.codec.incoherence_torch import tuning_inverse

    params = CodecParams(bits=5, block_size=16, block_axis=axis, dtype="bfloat16", transform=HadamardTransform(size=size, seed=11))
    gen = torch.Generator().manual_seed(width)
    shape = (40, width) if axis == 1 else (width, 40)
    values = torch.randn(shape, generator=gen)
    canonical = inverse_transform(values, params)
    fast = tuning_inverse(values, params)
    assert fast.shape == canonical.shape and fast.dtype == torch.float32
    assert float((fast - canonical).abs().max()) <= 8 * float(torch.finfo(torch.float32).eps) * float(canonical.abs().max())
    upstream = torch.randn(shape, generator=gen)
    grads = []
    for inverse in (inverse_transform, tuning_inverse):
        leaf = values.clone().requires_grad_(True)
        (inverse(leaf, params) * upstream).sum().backward()
        grads.append(leaf.grad)
    assert torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-5)
