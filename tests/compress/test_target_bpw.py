"""uc compress --target-bpw: per-tensor (width, block size) by measured sensitivity under a bits-per-weight cap."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from support.calibration import calibration_file, fast_options
from support.cli import assert_one_line_error, run_cli
from support.models import make_tiny_model

from uc_attest._internal.compress import sensitivity
from uc_attest._internal.compress.allocate import allocate, exact_glob
from uc_attest._internal.compress.options import CompressOptions
from uc_attest._internal.compress.pipeline import compress_model
from uc_attest._internal.errors import UsageError
from uc_attest._internal.pack.inspect import format_summary, summarize
from uc_attest._internal.pack.reader import open_pack
from uc_attest._internal.pack.verify import verify_pack


def test_allocation_respects_the_cap_and_widens_the_sensitive_tensor() -> None:
    options = [(b, 64) for b in (3, 4, 5, 6)]
    cost = {n: {o: 1000 * o[0] for o in options} for n in ("a", "b", "c")}
    # "b" loses 100x more than the others for every bit it does not get
    damage = {n: {o: (100.0 if n == "b" else 1.0) * 4.0 ** -o[0] for o in options} for n in ("a", "b", "c")}
    chosen = allocate(damage, cost, budget_bits=3 * 4000)
    assert sum(cost[n][o] for n, o in chosen.items()) <= 3 * 4000
    assert chosen["b"][0] > chosen["a"][0] and chosen["b"][0] > chosen["c"][0]
    assert allocate(damage, cost, budget_bits=3 * 6000) == {n: (6, 64) for n in "abc"}  # room for everything
    with pytest.raises(UsageError, match="narrowest"):
        allocate(damage, cost, budget_bits=3 * 3000 - 1)


def test_exact_glob_matches_only_its_key() -> None:
    import fnmatch

    key = "model.layers.0.mlp.experts[1].weight"
    assert fnmatch.fnmatchcase(key, exact_glob(key))
    assert not fnmatch.fnmatchcase("model.layers.0.mlp.experts1.weight", exact_glob(key))


def test_held_out_windows_avoid_the_coders_windows() -> None:
    ids = torch.arange(100 * 8)
    windows, held_out = sensitivity.held_out_windows(ids, 8, coded=10, count=4)
    coder = {(j * 100 // 10) for j in range(10)}
    assert held_out and windows.shape == (4, 8)
    assert not {int(w[0]) // 8 for w in windows} & coder
    _, short = sensitivity.held_out_windows(torch.arange(3 * 8), 8, coded=3, count=4)
    assert not short  # every window is the coder's: said so, not hidden


def _few_options(monkeypatch: pytest.MonkeyPatch) -> None:
    # fewer options keep the test fast; the allocation logic is the same
    monkeypatch.setattr(sensitivity, "OPTION_BITS", (3, 4, 5, 6))
    monkeypatch.setattr(sensitivity, "OPTION_BLOCKS", (32, 64))


@pytest.mark.slow  # the calibrated compressor
@pytest.mark.parametrize("arch", ["llama", "qwen3_moe", "mamba"])
def test_target_bpw_allocation_is_under_the_cap_recorded_and_verifies(arch: str, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    _few_options(monkeypatch)
    model_dir = make_tiny_model(arch, tmp_path / "model")
    manifest = compress_model(model_dir, tmp_path / "pack", fast_options(tmp_path, target_bpw=4.4), progress=False)
    assert verify_pack(tmp_path / "pack", progress=False).report.ok
    assert manifest.stats.effective_bits_per_weight <= 4.4
    cal = manifest.compression.calibration
    assert cal["target_bpw"] == 4.4 and cal["allocated_bpw_estimate"] == pytest.approx(manifest.stats.effective_bits_per_weight, abs=1e-5)
    # every quantized tensor inside the blocks has its own exact rule, and its codec follows it
    quantized = {t.name: t.codec for t in manifest.tensors if t.codec is not None}
    ruled = {k for k in quantized if exact_glob(k) in manifest.compression.bits_for}
    assert ruled and len(ruled) == cal["allocated_tensors"]
    for key in ruled:
        assert quantized[key].bits == manifest.compression.bits_for[exact_glob(key)]
        assert quantized[key].block_size == manifest.compression.block_size_for[exact_glob(key)]
    assert len({(c.bits, c.block_size) for c in quantized.values()}) > 1  # a mix, not a uniform choice
    summary = summarize(open_pack(tmp_path / "pack"))
    text = format_summary(summary)
    assert "--target-bpw 4.4" in text and "codings" in text
    assert summary.tensor_codings == {k: f"{c.bits} bits / block {c.block_size}" for k, c in quantized.items()}


@pytest.mark.slow  # the calibrated compressor
def test_target_bpw_spends_more_bits_on_a_higher_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _few_options(monkeypatch)
    model_dir = make_tiny_model("llama", tmp_path / "model")
    low = compress_model(model_dir, tmp_path / "low", fast_options(tmp_path, target_bpw=3.6), progress=False)
    high = compress_model(model_dir, tmp_path / "high", fast_options(tmp_path, target_bpw=5.6), progress=False)
    assert low.stats.effective_bits_per_weight <= 3.6 < high.stats.effective_bits_per_weight <= 5.6


def test_target_bpw_refuses_rules_and_datafree() -> None:
    with pytest.raises(ValueError, match="calibrated"):
        CompressOptions(method="datafree", target_bpw=5.0)
    with pytest.raises(ValueError):
        CompressOptions(target_bpw=1.0)


@pytest.mark.parametrize("extra", [
    ["--target-bpw", "abc"],
    ["--target-bpw", "1.5"],
    ["--target-bpw", "5", "--bits-for", "*.q_proj.weight=6"],
    ["--target-bpw", "5", "--method", "datafree"],
    ["--target-bpw", "2.2"],  # below the narrowest mix: refused after measuring, nothing written
])  # fmt: skip
def test_bad_target_bpw_exits_2_with_one_line(extra: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model_dir = make_tiny_model("llama", tmp_path / "model")
    cal = calibration_file(tmp_path)
    r = run_cli("uc", "compress", model_dir, "-o", tmp_path / "pack", "--samples", "4", "--seq-len", "32", "--calibration", cal, "--quiet", *extra)
    assert_one_line_error(r.rc, r.err, (2,))
    assert not (tmp_path / "pack").exists()
    assert not list(tmp_path.glob(".uc-sensitivity-*"))


@pytest.mark.slow  # the calibrated compressor
def test_target_bpw_codes_each_map_once_in_the_domain_the_sensitivity_pass_chose(tmp_path: Path,
                                                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """The sensitivity pass already codes every map's row sample in both domains: the coder sweeps each map once, there."""
    from uc_attest._internal.compress import calibrated, target

    _few_options(monkeypatch)
    measured: list[sensitivity.Sensitivity] = []
    modes: list[str] = []
    real_measure, real_group = target.measure_sensitivity, calibrated.gptq_quantize_group

    def measure(*args, **kwargs):  # type: ignore[no-untyped-def]
        measured.append(real_measure(*args, **kwargs))
        return measured[-1]

    def group(*args, **kwargs):  # type: ignore[no-untyped-def]
        modes.append(kwargs["incoherence"])
        return real_group(*args, **kwargs)

    monkeypatch.setattr(target, "measure_sensitivity", measure)
    monkeypatch.setattr(calibrated, "gptq_quantize_group", group)
    model_dir = make_tiny_model("llama", tmp_path / "model")
    manifest = compress_model(model_dir, tmp_path / "pack", fast_options(tmp_path, target_bpw=4.4), progress=False)
    assert verify_pack(tmp_path / "pack", progress=False).report.ok
    chosen = measured[0].rotated
    assert chosen and set(modes) <= {"on", "off"}  # no map coded twice ("auto")
    codecs = {t.name: t.codec for t in manifest.tensors if t.codec is not None}
    for key, rotated in chosen.items():
        assert (codecs[key].transform is not None) == rotated, key
    assert f"{sum(chosen.values())} of {len(chosen)} maps rotated" in str(manifest.compression.calibration["incoherence_choice"])
    # --incoherence off is never overridden by the per-map choice
    off = fast_options(tmp_path, target_bpw=4.4).model_copy(update={"incoherence": "off", "incoherence_for": {"*": "on"}})
    assert off.incoherence_for_key("model.layers.0.self_attn.q_proj.weight") == "off"
