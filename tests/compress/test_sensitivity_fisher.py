"""--target-bpw's damage estimate: the real coder's error per option, the true Fisher streamed one block resident."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from support.calibration import fast_options
from support.models import make_tiny_model

from uc_attest._internal.architecture import load_config
from uc_attest._internal.codec.params import CodecParams
from uc_attest._internal.codec.reconstruct import reconstruct_from_codes
from uc_attest._internal.compress import sensitivity
from uc_attest._internal.compress.gptq import gptq_quantize_group
from uc_attest._internal.compress.option_error import coding_differences, complete_grid, measured_options, reference_option, row_errors
from uc_attest._internal.compress.options import CompressOptions
from uc_attest._internal.compress.pipeline import tensor_roles
from uc_attest._internal.source_model import SafetensorsSource


def _hessian(width: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4 * width, width, generator=g) * torch.linspace(0.05, 3.0, width)  # uneven input scales
    return x.t() @ x / x.shape[0]


def test_option_error_is_the_real_coders_canonical_error() -> None:
    """Each option's D is exactly what gptq_quantize_group (incoherence auto) codes: same codes, same canonical values."""
    g = torch.Generator().manual_seed(1)
    rows, h = torch.randn(12, 64, generator=g) * 0.05, _hessian(64)
    options = CompressOptions()
    diffs = coding_differences(rows, h, options, [(3, 32), (5, 64)])
    for (bits, size), d in diffs.items():
        params = CodecParams(bits=bits, block_size=size, block_axis=1, dtype=options.dtype)
        enc, codes = gptq_quantize_group([rows], [params], h, damp=options.damp, act_order=options.act_order, seed=options.seed,
                                         incoherence=options.incoherence)[0]  # fmt: skip
        rebuilt = reconstruct_from_codes(codes, enc.codebook, enc.scales, enc.params).to(torch.float32)
        assert torch.equal(d, rebuilt - rows)
    errors = {o: row_errors(d, h) for o, d in diffs.items()}
    assert errors[(3, 32)].shape == (12,) and float(errors[(3, 32)].sum()) > float(errors[(5, 64)].sum()) > 0


def test_the_grid_is_coded_on_its_cross_and_completed_by_separability() -> None:
    bits, blocks = (3, 4, 5, 6, 7, 8), (32, 64, 128)
    assert reference_option(bits, blocks) == (5, 64)
    cross = measured_options(bits, blocks)
    assert len(cross) == 8 and all(b == 5 or s == 64 for b, s in cross)
    true = {(b, s): 4.0 ** -b * (1 + s / 64) for b in bits for s in blocks}  # a separable damage is rebuilt exactly
    grid = complete_grid({o: true[o] for o in cross}, bits, blocks)
    assert grid.keys() == true.keys() and all(grid[o] == pytest.approx(true[o]) for o in true)


@pytest.mark.slow  # a streamed forward and backward pass over a tiny model
def test_the_estimate_repeats_and_prices_fewer_bits_higher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sensitivity, "OPTION_BITS", (3, 6))
    monkeypatch.setattr(sensitivity, "OPTION_BLOCKS", (32,))
    model_dir = make_tiny_model("llama", tmp_path / "model")
    source = SafetensorsSource(model_dir)
    config = load_config(model_dir / "config.json")
    roles = tensor_roles(source, config)
    options = fast_options(tmp_path)
    first = sensitivity.measure_sensitivity(model_dir, source, config, roles, options, tmp_path, progress=False)
    again = sensitivity.measure_sensitivity(model_dir, source, config, roles, options, tmp_path, progress=False)
    assert first.damage == again.damage  # seeded labels, deterministic kernels: the allocation repeats
    block_tensors = {k for k, r in roles.items() if r.quantize and ".layers." in k}
    assert set(first.damage) == block_tensors
    for key, damage in first.damage.items():
        assert damage[(3, 32)] > damage[(6, 32)] > 0, key
    assert first.info["sensitivity_windows"] >= 1 and not list(tmp_path.glob(".uc-sensitivity-*"))


@pytest.mark.slow  # two streamed passes over each of two tiny models
@pytest.mark.parametrize("arch", ["llama", "mixtral"])
def test_pricing_on_a_second_thread_gives_the_damages_of_pricing_in_line(arch: str, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Block i priced while block i-1 is backpropagated: the same damages, bit for bit and in the same order.

    llama's blocks are read through dense maps only, so each is priced on the
    pricing thread; mixtral's fused experts carry a diagonal Fisher of the
    block's size, so its blocks are priced in line (no second block-sized
    tensor held), and the result is the same either way.
    """
    monkeypatch.setattr(sensitivity, "OPTION_BITS", (3, 6))
    monkeypatch.setattr(sensitivity, "OPTION_BLOCKS", (32,))
    threads: list[str] = []
    price = sensitivity._price_block

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread().name)
        return price(*args, **kwargs)

    monkeypatch.setattr(sensitivity, "_price_block", spy)
    model_dir = make_tiny_model(arch, tmp_path / "model")
    source = SafetensorsSource(model_dir)
    config = load_config(model_dir / "config.json")
    roles = tensor_roles(source, config)
    options = fast_options(tmp_path)
    overlapped = sensitivity.measure_sensitivity(model_dir, source, config, roles, options, tmp_path, progress=False)
    on_pricing_thread = [name.startswith("uc-pricing") for name in threads]
    threads.clear()
    monkeypatch.setattr(sensitivity, "_thread_counts_per_thread", lambda: False)
    in_line = sensitivity.measure_sensitivity(model_dir, source, config, roles, options, tmp_path, progress=False)
    assert threads and not any(name.startswith("uc-pricing") for name in threads)
    if "OpenMP" in torch.__config__.parallel_info():
        assert all(on_pricing_thread) if arch == "llama" else not any(on_pricing_thread)
    assert list(overlapped.damage) == list(in_line.damage) and overlapped.damage == in_line.damage
    assert overlapped.cost_bits == in_line.cost_bits and overlapped.rotated == in_line.rotated


@pytest.mark.slow  # a streamed forward and backward pass over a tiny model
def test_maps_reading_one_input_are_priced_as_one_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """q, k, v (and gate, up) share one Hessian and one sweep, as the coder sweeps them: 4 groups per llama block, not 7."""
    monkeypatch.setattr(sensitivity, "OPTION_BITS", (3, 6))
    monkeypatch.setattr(sensitivity, "OPTION_BLOCKS", (32,))
    sizes: list[int] = []
    priced = sensitivity.group_differences

    def spy(rows, *args, **kwargs):  # type: ignore[no-untyped-def]
        sizes.append(len(rows))
        return priced(rows, *args, **kwargs)

    monkeypatch.setattr(sensitivity, "group_differences", spy)
    model_dir = make_tiny_model("llama", tmp_path / "model")
    source = SafetensorsSource(model_dir)
    config = load_config(model_dir / "config.json")
    sensitivity.measure_sensitivity(model_dir, source, config, tensor_roles(source, config), fast_options(tmp_path), tmp_path,
                                    progress=False)  # fmt: skip
    blocks = int(config.num_hidden_layers)
    assert sorted(sizes) == sorted([3, 1, 2, 1] * blocks)


def test_sampled_labels_follow_each_rows_distribution_and_never_draw_an_impossible_token() -> None:
    from uc_attest._internal.compress.sensitivity import _sample_labels

    probs = torch.tensor([[0.0, 0.2, 0.0, 0.5, 0.3], [0.0, 0.0, 0.0, 0.0, 1.0]]).repeat(50_000, 1)
    labels = _sample_labels(probs, torch.Generator().manual_seed(3)).squeeze(1)
    first, second = labels[0::2], labels[1::2]
    share = torch.bincount(first, minlength=5).double() / first.numel()
    assert share[0] == 0 and share[2] == 0
    assert torch.allclose(share, torch.tensor([0.0, 0.2, 0.0, 0.5, 0.3], dtype=torch.float64), atol=0.01)
    assert torch.all(second == 4)
    again = _sample_labels(probs, torch.Generator().manual_seed(3)).squeeze(1)
    assert torch.equal(labels, again)  # seeded: the estimate repeats
