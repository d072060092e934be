"""Calibrated streaming compression on tiny random models of several architectures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from support.cli import run_cli
from support.calibration import calibration_file, fast_options
from support.models import make_tiny_model
from uc_attest._internal.compress import calibrated, hessian
from uc_attest._internal.compress.options import CompressOptions
from uc_attest._internal.compress.pipeline import compress_model
from uc_attest._internal.evaluate.loading import load_model_dir, reconstructed_state_dict
from uc_attest._internal.pack.reader import open_pack
from uc_attest._internal.pack.verify import verify_pack


@pytest.mark.slow  # the calibrated compressor
@pytest.mark.parametrize("arch", ["llama", "mixtral", "mamba", "gpt2", "qwen3_moe"])
def test_calibrated_compress_verifies(arch: str, tmp_path: Path) -> None:
    model_dir = make_tiny_model(arch, tmp_path / "model")
    manifest = compress_model(model_dir, tmp_path / "pack", fast_options(tmp_path), progress=False)
    assert verify_pack(tmp_path / "pack", progress=False).report.ok
    assert manifest.compression.method == "calibrated"
    cal = manifest.compression.calibration
    assert cal["algorithm"] == "gptq-codebook-v1" and cal["samples"] == 6 and cal["blocks"] == 2
    quantized = [t for t in manifest.tensors if t.kind == "quantized"]
    assert quantized
    # every checkpoint tensor is in the pack
    from uc_attest._internal.source_model import SafetensorsSource

    assert {t.name for t in manifest.tensors} == set(SafetensorsSource(model_dir).keys())
    assert not (tmp_path / "pack.partial-work").exists()
    if arch in ("mixtral", "qwen3_moe"):  # experts got routed statistics, not the fallback
        fallbacks = json.loads(str(cal.get("fallbacks", "{}")))
        assert not any("experts" in k for k in fallbacks)


def _output_error(model_dir: Path, pack: Path, ids: torch.Tensor) -> float:
    from uc_attest._internal.evaluate.loading import load_pack_model

    with torch.no_grad():
        ref = load_model_dir(model_dir).float()(input_ids=ids).logits
        got = load_pack_model(pack).float()(input_ids=ids).logits
    return float(((ref - got) ** 2).mean())


@pytest.mark.slow  # the calibrated compressor
def test_calibrated_beats_datafree(tmp_path: Path) -> None:
    model_dir = make_tiny_model("llama", tmp_path / "model")
    opts = fast_options(tmp_path, bits=3, samples=12)
    compress_model(model_dir, tmp_path / "cal", opts, progress=False)
    compress_model(model_dir, tmp_path / "df", opts.model_copy(update={"method": "datafree"}), progress=False)
    ids, _ = calibrated.calibration_ids(model_dir, opts, 160)
    ids = ids[:4]
    assert _output_error(model_dir, tmp_path / "cal", ids) < _output_error(model_dir, tmp_path / "df", ids)


@pytest.mark.slow  # the calibrated compressor
def test_propagated_weights_are_the_canonical_reconstruction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the next block's inputs were computed with is bit-identical to what the pack rebuilds."""
    model_dir = make_tiny_model("llama", tmp_path / "model")
    seen: dict[str, torch.Tensor] = {}
    original = calibrated.BlockCoder._load

    def spy(self, keys, results):  # type: ignore[no-untyped-def]
        original(self, keys, results)
        for k in keys:  # read back what the block's parameters now hold (plain linear names here)
            module_name, _, attr = k.rpartition(".")
            seen[k] = getattr(self.model.get_submodule(module_name), attr).detach().clone()

    monkeypatch.setattr(calibrated.BlockCoder, "_load", spy)
    opts = fast_options(tmp_path, calibration_dtype="float32")
    compress_model(model_dir, tmp_path / "pack", opts, progress=False)
    rebuilt = reconstructed_state_dict(open_pack(tmp_path / "pack"))
    quantized = {t.name for t in open_pack(tmp_path / "pack").manifest.tensors if t.kind == "quantized"}
    assert quantized == set(seen)
    for name in quantized:
        assert rebuilt[name].dtype == torch.bfloat16
        assert torch.equal(seen[name], rebuilt[name].to(torch.float32)), name


@pytest.mark.slow  # the calibrated compressor
def test_dead_expert_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An expert no token reaches: gate/up from all the layer's tokens, down data-free; recorded."""
    model_dir = make_tiny_model("mixtral", tmp_path / "model")
    original = hessian._expert_inputs

    def never_expert_zero(module, args, kwargs):  # type: ignore[no-untyped-def]
        hidden, top_k = original(module, args, kwargs)
        return hidden, torch.where(top_k == 0, torch.full_like(top_k, 1), top_k)

    monkeypatch.setattr(hessian, "_expert_inputs", never_expert_zero)
    manifest = compress_model(model_dir, tmp_path / "pack", fast_options(tmp_path), progress=False)
    fallbacks = json.loads(str(manifest.compression.calibration["fallbacks"]))
    for layer in (0, 1):
        base = f"model.layers.{layer}.block_sparse_moe.experts.0"
        assert "all tokens" in fallbacks[f"{base}.w1.weight"]
        assert "all tokens" in fallbacks[f"{base}.w3.weight"]
        assert "data-free" in fallbacks[f"{base}.w2.weight"]
        assert not any(".experts.1." in k for k in fallbacks)
    assert verify_pack(tmp_path / "pack", progress=False).report.ok


@pytest.mark.slow  # the calibrated compressor
def test_deterministic(tmp_path: Path) -> None:
    model_dir = make_tiny_model("llama", tmp_path / "model")
    opts = fast_options(tmp_path)
    compress_model(model_dir, tmp_path / "a", opts, progress=False)
    compress_model(model_dir, tmp_path / "b", opts, progress=False)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_options_default_to_calibrated() -> None:
    assert CompressOptions().method == "calibrated"


@pytest.mark.slow  # the calibrated compressor
@pytest.mark.parametrize("method", ["calibrated", "datafree"])
def test_per_tensor_widths_follow_bits_for(tmp_path: Path, method: str) -> None:
    """q/k/v of one group are swept together with different widths; each tensor records its own."""
    model_dir = make_tiny_model("llama", tmp_path / "model")
    opts = fast_options(tmp_path).model_copy(update={"method": method, "bits_for": {"*.k_proj.weight": 6, "*.o_proj.*": 3}})
    manifest = compress_model(model_dir, tmp_path / "pack", opts, progress=False)
    assert verify_pack(tmp_path / "pack", progress=False).report.ok
    assert manifest.compression.bits_for == {"*.k_proj.weight": 6, "*.o_proj.*": 3}
    widths = {t.name: t.codec.bits for t in manifest.tensors if t.codec is not None}
    assert {b for n, b in widths.items() if ".k_proj." in n} == {6}
    assert {b for n, b in widths.items() if ".o_proj." in n} == {3}
    assert {b for n, b in widths.items() if ".k_proj." not in n and ".o_proj." not in n} == {opts.bits}
    uniform = compress_model(model_dir, tmp_path / "uniform", opts.model_copy(update={"bits_for": {}}), progress=False)
    assert uniform.stats.effective_bits_per_weight != manifest.stats.effective_bits_per_weight


@pytest.mark.slow  # the calibrated compressor
@pytest.mark.parametrize("method", ["calibrated", "datafree"])
def test_per_tensor_block_sizes_follow_block_size_for(tmp_path: Path, method: str) -> None:
    """A tensor's block size comes from the glob that matches it; each tensor's codec records its own, and the pack verifies."""
    model_dir = make_tiny_model("llama", tmp_path / "model")
    rule = {"*.mlp.*": 32, "*.k_proj.weight": 16}
    opts = fast_options(tmp_path).model_copy(update={"method": method, "block_size_for": rule})
    manifest = compress_model(model_dir, tmp_path / "pack", opts, progress=False)
    assert verify_pack(tmp_path / "pack", progress=False).report.ok
    assert manifest.compression.block_size_for == rule
    sizes = {t.name: t.codec.block_size for t in manifest.tensors if t.codec is not None}
    assert {b for n, b in sizes.items() if ".mlp." in n} == {32}
    assert {b for n, b in sizes.items() if ".k_proj." in n} == {16}
    assert {b for n, b in sizes.items() if ".mlp." not in n and ".k_proj." not in n} == {opts.block_size}
    uniform = compress_model(model_dir, tmp_path / "uniform", opts.model_copy(update={"block_size_for": {}}), progress=False)
    assert uniform.compression.block_size_for == {}
    assert uniform.stats.effective_bits_per_weight < manifest.stats.effective_bits_per_weight  # smaller blocks, more scales


def test_block_size_for_refuses_out_of_range_sizes_and_disagreeing_globs() -> None:
    from uc_attest._internal.errors import UsageError

    with pytest.raises(ValueError, match="block size must be in 8..4096"):
        CompressOptions(block_size_for={"*": 4})
    assert CompressOptions(block_size_for={"*.mlp.*": 128}).block_size_for_key("layers.0.mlp.up_proj.weight") == 128
    assert CompressOptions(block_size_for={"*.mlp.*": 128}).block_size_for_key("layers.0.self_attn.q_proj.weight") == 64
    with pytest.raises(UsageError, match="--block-size-for globs of different block sizes"):
        CompressOptions(block_size_for={"*.mlp.*": 128, "*up_proj*": 32}).block_size_for_key("layers.0.mlp.up_proj.weight")


def test_bits_for_rejects_a_width_out_of_range() -> None:
    with pytest.raises(ValueError, match="bits must be in 2..8"):
        CompressOptions(bits_for={"*": 9})
    rule = CompressOptions(bits_for={"*.k_proj.*": 6, "*.v_proj.*": 6, "*.o_proj.*": 4})
    assert rule.bits_for_key("layers.0.k_proj.weight") == 6
    assert rule.bits_for_key("layers.0.q_proj.weight") == 5
    assert CompressOptions(bits_for={"*.k_proj.*": 6, "*k_proj*": 6}).bits_for_key("layers.0.k_proj.weight") == 6


def test_bits_for_refuses_a_tensor_that_two_widths_claim(tmp_path: Path) -> None:
    # the manifest stores the rule with sorted keys, so an order-dependent rule would be ambiguous
    from uc_attest._internal.errors import UsageError

    with pytest.raises(UsageError, match="different widths"):
        CompressOptions(bits_for={"*.k_proj.*": 6, "*": 4}).bits_for_key("layers.0.k_proj.weight")
    model_dir = make_tiny_model("llama", tmp_path / "model")
    opts = fast_options(tmp_path).model_copy(update={"method": "datafree", "bits_for": {"*.k_proj.*": 6, "*": 4}})
    with pytest.raises(UsageError):
        compress_model(model_dir, tmp_path / "pack", opts, progress=False)
    assert not (tmp_path / "pack").exists()


@pytest.mark.slow  # the calibrated compressor
def test_auto_calibration_dtype_follows_the_cpu_and_the_pack_records_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16 replays only where the CPU multiplies bf16 natively (AVX512-BF16 or AMX); the resolved dtype is recorded."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert calibrated.resolve_calibration_dtype("auto") == "float32"
    assert calibrated.resolve_calibration_dtype("bfloat16") == "bfloat16"
    model_dir = make_tiny_model("llama", tmp_path / "model")
    manifest = compress_model(model_dir, tmp_path / "f32", fast_options(tmp_path), progress=False)
    assert manifest.compression.calibration["compute_dtype"] == "float32"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert calibrated.resolve_calibration_dtype("auto") == "bfloat16"
    assert calibrated.resolve_calibration_dtype("float32") == "float32"
    manifest = compress_model(model_dir, tmp_path / "bf16", fast_options(tmp_path), progress=False)
    assert manifest.compression.calibration["compute_dtype"] == "bfloat16"


@pytest.mark.slow  # the calibrated compressor
def test_refit_grid_is_recorded_changes_the_codes_and_verifies(tmp_path: Path) -> None:
    """``uc compress --refit-grid`` reaches the coder: recorded in the pack, other codec state, still a valid pack."""
    model_dir = make_tiny_model("llama", tmp_path / "model")
    common = ["--samples", "6", "--seq-len", "48", "--calibration", str(calibration_file(tmp_path)), "--quiet"]
    for name, flag in (("plain", "--no-refit-grid"), ("refit", "--refit-grid")):
        proc = run_cli("uc", "compress", str(model_dir), "-o", str(tmp_path / name), flag, *common)
        assert proc.rc == 0, proc.err
        assert verify_pack(tmp_path / name, progress=False).report.ok
    plain, refit = (open_pack(tmp_path / n).manifest for n in ("plain", "refit"))
    assert plain.compression.calibration["refit_grid"] is False and refit.compression.calibration["refit_grid"] is True
    # same tensors and shapes, but the refit moved codebooks or scales somewhere
    assert [(t.name, t.shape) for t in plain.tensors] == [(t.name, t.shape) for t in refit.tensors]
    assert {t.name: t.digest for t in plain.tensors} != {t.name: t.digest for t in refit.tensors}
