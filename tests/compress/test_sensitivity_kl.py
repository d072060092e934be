"""The KL probe and the damage estimate of --target-bpw on a tiny model (the SmolLM2 figure: bench/sensitivity_validation.py)."""

from __future__ import annotations


import pytest
import torch
import transformers

from support.calibration import fast_options
from support.models import make_tiny_model
from uc_attest.compress import sensitivity as sens
from uc_attest.compress.pipeline import tensor_roles
from uc_attest.evaluate.source import SafetensorsSource


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> tuple[sens.KLProbe, object]:
    root = tmp_path_factory.mktemp("kl")
    model = make_tiny_model("llama", root / "model", seed=2)
    config = transformers.AutoConfig.from_pretrained(model)
    source = SafetensorsSource(model)
    options = fast_options(root)
    windows, _ = sens.probe_windows(model, config, options)
    return sens.KLProbe(source, config, tensor_roles(source, config), windows), options


def test_the_original_tensor_costs_nothing_and_a_coded_one_costs_kl(probe) -> None:  # type: ignore[no-untyped-def]
    kl, options = probe
    assert kl.windows.shape[0] == sens.KL_WINDOWS
    key = next(k for k in kl.block_keys[1] if k.endswith("v_proj.weight"))
    weight = kl.source.load(key)
    assert kl.kl_increase(key, weight) == 0.0  # the probe restores what it swaps and reruns deterministically
    coded, _ = sens.coded_rows(sens.as_rows(weight, 1).float(), (3, 64), kl.hessian(key), options)
    assert kl.kl_increase(key, coded.to(weight.dtype)) > 0.0
    assert kl.kl_increase(key, weight) == 0.0  # and the model is the original again


def test_the_estimate_ranks_options_and_measured_kl_alike(probe) -> None:  # type: ignore[no-untyped-def]
    kl, options = probe
    key = next(k for k in kl.block_keys[0] if k.endswith("down_proj.weight"))
    assert kl.hessian(key) is not None and kl.hessian(key).shape == (96, 96)  # type: ignore[union-attr]
    est = sens.estimate_tensor(kl, key, options, [(3, 32), (5, 32), (8, 32)])
    assert est.coefficient > 0 and est.kl_reference > 0
    assert est.errors[(3, 32)] > est.errors[(5, 32)] > est.errors[(8, 32)] > 0
    weight = kl.source.load(key)
    measured = []
    for option in [(3, 32), (5, 32), (8, 32)]:
        coded, _ = sens.coded_rows(sens.as_rows(weight, 1).float(), option, kl.hessian(key), options)
        measured.append(kl.kl_increase(key, coded.to(weight.dtype)))
    assert measured[0] > measured[1] > measured[2]
    # the product predicts the 3-bit cost within a factor of 3 (on SmolLM2 the bench reports rank correlations)
    predicted = est.coefficient * est.errors[(3, 32)]
    assert predicted / 3 < measured[0] < predicted * 3


def test_rows_round_trip_both_layouts() -> None:
    t = torch.arange(24.0).reshape(2, 3, 4)
    for axis in (0, 1, 2):
        assert torch.equal(sens.from_rows(sens.as_rows(t, axis), tuple(t.shape), axis), t)
