"""End to end on the real model: compress, verify, inspect, load, evaluate, tamper."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from uc_attest import load_model
from uc_attest._internal.evaluate.loading import load_model_dir
from uc_attest._internal.evaluate.perplexity import evaluate_tokens
from uc_attest._internal.evaluate.text import default_calibration_text, default_eval_text
from uc_attest._internal.evaluate.tokens import tokenize_text
from uc_attest._internal.pack.inspect import summarize
from uc_attest._internal.pack.reader import open_pack
from uc_attest._internal.pack.verify import verify_pack
from uc_attest._internal.evaluate.settings import EvalSettings

pytestmark = pytest.mark.integration


def test_calibration_and_evaluation_text_never_overlap() -> None:
    calibration = set(default_calibration_text().split("\n\n"))
    evaluation = set(default_eval_text().split("\n\n"))
    assert len(evaluation) > 100 and len(calibration) > 100
    assert not calibration & evaluation


def test_pack_verifies_and_spends_about_five_bits(smollm2_pack: Path) -> None:
    report = verify_pack(smollm2_pack, progress=False).report
    assert report.ok, report.failures
    summary = summarize(open_pack(smollm2_pack))
    assert summary.model_type == "llama"
    assert 5.0 < summary.effective_bits_per_weight <= 5.3
    assert summary.quantized_tensors == 30 * 7  # every linear map of the 30 decoder blocks
    assert "Q4_1" in summary.source_note
    # --target-bpw 5.3: every linear map has its own measured choice, recorded as an exact rule
    manifest = open_pack(smollm2_pack).manifest
    assert manifest.compression.calibration["target_bpw"] == 5.3
    codecs = {t.name: t.codec for t in manifest.tensors if t.codec}
    assert all(manifest.compression.bits_for[name] == c.bits for name, c in codecs.items())
    assert len({c.bits for c in codecs.values()}) > 1 and summary.target_bpw == 5.3


def test_pack_perplexity_close_to_baseline(smollm2_dir: Path, smollm2_pack: Path) -> None:
    ids = tokenize_text(smollm2_dir, default_eval_text())
    base = evaluate_tokens(load_model_dir(smollm2_dir), ids, EvalSettings(seq_len=256, max_windows=6, progress=False))
    packed = evaluate_tokens(load_model(smollm2_pack), ids, EvalSettings(seq_len=256, max_windows=6, progress=False))
    assert packed.windows == base.windows == 6
    # within what policies/strict.toml allows; a coder bug that let two outlier
    # input features own a codebook once gave 8.9 here
    # 6 x 256 tokens are a small sample: the pack may even come out slightly ahead here (measured 0.99 with the
    # light calibration); the 40 x 512 measurement is in docs/RESULTS.md. The bound is strict's limit.
    assert 0.95 < packed.perplexity / base.perplexity < 1.10


def test_loaded_weights_are_the_verified_reconstruction(smollm2_pack: Path) -> None:
    pack = open_pack(smollm2_pack)
    model = load_model(pack)
    from uc_attest._internal.codec.reconstruct import tensor_digest

    state = model.state_dict()
    digests = {t.name: t.digest for t in pack.manifest.tensors}
    for name in ("model.layers.0.self_attn.q_proj.weight", "model.layers.29.mlp.down_proj.weight", "model.norm.weight"):
        assert tensor_digest(state[name]) == digests[name]
    assert state["model.layers.0.self_attn.q_proj.weight"].dtype == torch.bfloat16


def test_one_flipped_byte_in_a_real_shard_fails(smollm2_pack: Path, tmp_path: Path) -> None:
    copy = tmp_path / "pack"
    shutil.copytree(smollm2_pack, copy)
    shard = next(copy.glob("codec-*.safetensors"))
    with open(shard, "r+b") as handle:
        handle.seek(shard.stat().st_size - 12345)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0x10]))
    report = verify_pack(copy, progress=False).report
    assert not report.ok
    assert any(shard.name in f for f in report.failures)
    assert any("reconstruction digest" in f for f in report.failures)


def test_calibrated_beats_datafree_on_real_weights(smollm2_head_dir: Path, tmp_path: Path) -> None:
    """On held-out text, block-by-block GPTQ gives logits closer to the original than the data-free codec."""
    from uc_attest._internal.compress.options import CompressOptions
    from uc_attest._internal.compress.pipeline import compress_model

    ids = tokenize_text(smollm2_head_dir, default_eval_text())[: 4 * 256].view(4, 256)
    with torch.no_grad():
        base = load_model_dir(smollm2_head_dir)(input_ids=ids).logits.float()
        errors = {}
        for method in ("datafree", "calibrated"):
            pack = tmp_path / method
            compress_model(smollm2_head_dir, pack, CompressOptions(method=method, samples=16, seq_len=256), progress=False)
            assert verify_pack(pack, progress=False).report.ok
            logits = load_model(pack)(input_ids=ids).logits.float()
            errors[method] = float((logits - base).norm() / base.norm())
    assert errors["calibrated"] < errors["datafree"], errors
