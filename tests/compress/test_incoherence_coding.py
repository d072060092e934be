"""The coder's incoherence choice, and a pack that uses it through every consumer of the reconstruction."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from support.calibration import fast_options
from support.models import make_tiny_model
from uc_attest import load_model
from uc_attest._internal.codec.params import CodecParams
from uc_attest._internal.codec.reconstruct import tensor_digest
from uc_attest._internal.compress.gptq import canonical_error, gptq_quantize_group, hadamard_for_width, prepared_hessian
from uc_attest._internal.compress.pipeline import compress_model
from uc_attest._internal.pack.export import export_pack
from uc_attest._internal.pack.reader import open_pack
from uc_attest._internal.pack.tensor_reader import VerifiedTensorReader
from uc_attest._internal.pack.verify import verify_pack


def _problem(cols: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4096, cols, generator=g) * (torch.rand(cols, generator=g) * 2 + 0.2)
    w = torch.randn(48, cols, generator=g) * 0.05
    w[torch.rand(48, cols, generator=g) < 0.01] *= 25.0  # a few outlier weights per row: what the rotation spreads
    return w, x.t() @ x / x.shape[0]


def test_hadamard_size_is_the_largest_power_of_four_dividing_the_width() -> None:
    assert hadamard_for_width(576, 3).size == 64  # SmolLM2's hidden width, 64 * 9  # type: ignore[union-attr]
    assert hadamard_for_width(1536, 3).size == 256  # its MLP width, 512 * 3: 256 keeps the scaling exact  # type: ignore[union-attr]
    assert hadamard_for_width(4096, 0).size == 4096  # type: ignore[union-attr]
    assert hadamard_for_width(100, 0) is None  # 4 * 25: too small a run to mix


def test_auto_keeps_per_map_the_lower_canonical_error_and_records_the_transform() -> None:
    w, h = _problem()
    p = CodecParams(bits=4, block_size=64, block_axis=1)
    plain = gptq_quantize_group([w[:24], w[24:]], [p, p], h)
    auto = gptq_quantize_group([w[:24], w[24:]], [p, p], h, incoherence="auto")
    hp = prepared_hessian(h, 0.01)
    for part, off, chosen in zip((w[:24], w[24:]), plain, auto, strict=True):
        assert chosen[0].params.transform is not None  # on outlier-heavy rows the rotation wins
        assert canonical_error(part, 1, chosen, hp) < 0.8 * canonical_error(part, 1, off, hp)
    # the transposed (GPT-2 Conv1D) layout takes the same choice along axis 0
    pt = CodecParams(bits=4, block_size=64, block_axis=0)
    enc_t, codes_t = gptq_quantize_group([w.t().contiguous()], [pt], h, incoherence="auto")[0]
    enc, codes = gptq_quantize_group([w], [p], h, incoherence="auto")[0]
    assert enc_t.params.transform == enc.params.transform and torch.equal(codes_t, codes.t())


def test_off_is_the_coder_of_before() -> None:
    w, h = _problem()
    p = CodecParams(bits=5, block_size=32, block_axis=1)
    (a, ca), (b, cb) = gptq_quantize_group([w], [p], h)[0], gptq_quantize_group([w], [p], h, incoherence="off")[0]
    assert a.params.transform is None and b.params.transform is None and torch.equal(ca, cb)
    with pytest.raises(ValueError):
        gptq_quantize_group([w], [p], h, incoherence="always")
    on, _ = gptq_quantize_group([w], [p], h, incoherence="on")[0]  # the rotated coding only (the sensitivity's sweeps)
    assert on.params.transform is not None


@pytest.fixture(scope="module")
def incoherent_pack(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("incoherent")
    model = make_tiny_model("llama", root / "model", seed=5)
    weights = load_file(str(model / "model.safetensors"))
    g = torch.Generator().manual_seed(1)
    for key, value in weights.items():  # outlier weights, as real checkpoints have, so that rotations pay
        if key.endswith("proj.weight"):
            mask = torch.rand(value.shape, generator=g) < 0.01
            weights[key] = torch.where(mask, value.float() * 20, value.float()).to(value.dtype)
    save_file(weights, str(model / "model.safetensors"), metadata={"format": "pt"})
    pack = root / "model.ucpack"
    compress_model(model, pack, fast_options(root, bits=4), progress=False)
    return model, pack


def test_the_pack_records_the_transform_and_every_consumer_rebuilds_it(incoherent_pack: tuple[Path, Path], tmp_path: Path) -> None:
    _model, pack = incoherent_pack
    manifest = open_pack(pack).manifest
    rotated = [t for t in manifest.tensors if t.codec is not None and t.codec.transform is not None]
    assert rotated and manifest.format_version == "1.1"
    assert manifest.compression.calibration["incoherence"] == "auto"
    verified = verify_pack(pack, progress=False)
    assert verified.report.ok, verified.report.failures
    # streaming evaluation's reader, load_model and export all hand out the digest-checked reconstruction
    reader = VerifiedTensorReader(verified)
    loaded = reader.load([t.name for t in rotated])
    assert all(tensor_digest(loaded[t.name]) == t.digest for t in rotated)
    state = load_model(pack).state_dict()
    exported = export_pack(pack, tmp_path / "hf")
    assert exported is not None
    files = load_file(str(next((tmp_path / "hf").glob("*.safetensors"))))
    for t in rotated:
        assert tensor_digest(files[t.name]) == t.digest
        module_key = t.name  # llama's checkpoint keys are its state-dict keys
        assert torch.equal(state[module_key], files[t.name])


def _forged(pack: Path, tmp_path: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    copy = tmp_path / "forged.ucpack"
    shutil.copytree(pack, copy)
    raw = json.loads((copy / "ucpack.json").read_text())
    edit(raw)
    (copy / "ucpack.json").write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n")
    return copy


def _first_rotated(raw: dict) -> dict:
    return next(t for t in raw["tensors"] if (t.get("codec") or {}).get("transform"))


@pytest.mark.parametrize("edit", [
    lambda raw: _first_rotated(raw)["codec"]["transform"].update(seed=_first_rotated(raw)["codec"]["transform"]["seed"] + 1),
    lambda raw: _first_rotated(raw)["codec"]["transform"].update(size=_first_rotated(raw)["codec"]["transform"]["size"] // 2),
    lambda raw: _first_rotated(raw)["codec"].pop("transform"),
], ids=["other-seed", "smaller-size", "transform-dropped"])  # fmt: skip
def test_a_forged_transform_fails_verification(incoherent_pack: tuple[Path, Path], tmp_path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    """Same codes, scales and codebook, another transform: the reconstruction no longer matches the digest."""
    forged = _forged(incoherent_pack[1], tmp_path, edit)
    verified = verify_pack(forged, progress=False)
    assert not verified.report.ok
    assert any("digest" in f for f in verified.report.failures)


def test_a_transform_under_format_1_0_is_refused(incoherent_pack: tuple[Path, Path], tmp_path: Path) -> None:
    from uc_attest._internal.errors import VerificationError

    forged = _forged(incoherent_pack[1], tmp_path, lambda raw: raw.update(format_version="1.0"))
    with pytest.raises(VerificationError, match="1.1"):
        verify_pack(forged, progress=False)
