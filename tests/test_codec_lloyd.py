"""The C Lloyd rounds of the codebook learner (codec/_lloyd.c) give the numpy rounds' entries, bit for bit.

Why bit for bit: the learned codebook is stored in the pack, and the pack must
not depend on whether the extension was built (a source tree without a C
compiler, or ``UC_ATTEST_NATIVE=0``, runs the numpy rounds).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uc_attest._internal.codec import codebook as cb_module
from uc_attest._internal.codec.codebook import learn_codebook

pytestmark = pytest.mark.skipif(cb_module._native_lloyd is None, reason="the C learner is not built in this tree")


def _cases() -> list[tuple[str, torch.Tensor, torch.Tensor | None]]:
    gen = torch.Generator().manual_seed(11)
    normal = torch.randn(20000, generator=gen)
    heavy = torch.rand(20000, generator=gen) ** 12 * 1e6  # importances a million times apart
    ties = torch.randint(-6, 7, (5000,), generator=gen).to(torch.float32) / 4  # few distinct values, many equal
    signed_zeros = torch.tensor([0.0, -0.0, 0.5, -0.5, 0.0, -0.0, 1.0] * 50)
    outliers = torch.cat((torch.randn(3000, generator=gen) * 1e-3, torch.tensor([1e4, -3e4])))
    return [
        ("normal, unit weights", normal, None),
        ("normal, heavy importances", normal, heavy),
        ("ties", ties, torch.rand(5000, generator=gen)),
        ("signed zeros", signed_zeros, None),
        ("outliers", outliers, torch.rand(3002, generator=gen) + 1e-6),
        ("one sample", torch.tensor([0.25]), None),
        ("fewer samples than entries", torch.randn(7, generator=gen), torch.rand(7, generator=gen)),
        ("zero weights", normal[:4000], torch.zeros(4000)),
        ("subsampled", torch.randn(70000, generator=gen), torch.rand(70000, generator=gen)),
    ]


@pytest.mark.parametrize("bits", [1, 3, 5, 8])
def test_native_rounds_give_the_numpy_entries(bits: int, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, values, weights in _cases():
        native = learn_codebook(values, bits, weights=weights, max_samples=1 << 16)
        monkeypatch.setenv("UC_ATTEST_NATIVE", "0")
        numpy_path = learn_codebook(values, bits, weights=weights, max_samples=1 << 16)
        monkeypatch.delenv("UC_ATTEST_NATIVE")
        assert torch.equal(native.view(torch.int32), numpy_path.view(torch.int32)), name  # the bits, -0.0 included


def test_native_rounds_stop_where_the_numpy_rounds_stop() -> None:
    """A round budget that ends mid-way: both stop after the same round (the entries of a partial run agree too)."""
    gen = torch.Generator().manual_seed(5)
    xs = torch.sort(torch.randn(9000, generator=gen, dtype=torch.float64)).values + 0.0
    ws = torch.rand(9000, generator=gen, dtype=torch.float64) + 1e-12
    for iterations in (0, 1, 2, 7, 25):
        native = cb_module._lloyd_native(xs.numpy(), ws.numpy(), 16, iterations)
        assert native is not None
        assert np.array_equal(native, cb_module._lloyd(xs, ws, 16, iterations)), iterations


def test_native_learner_refuses_buffers_that_do_not_fit() -> None:
    native = cb_module._native_lloyd
    xs, ws = np.zeros(8), np.ones(8)
    with pytest.raises(ValueError, match="do not fit"):
        native.learn(xs, ws[:4], 4, 25, np.empty(4))  # weights shorter than samples
    with pytest.raises(ValueError, match="do not fit"):
        native.learn(xs, ws, 4, 25, np.empty(3))  # output of another length
    with pytest.raises(ValueError, match="do not fit"):
        native.learn(xs[:0], ws[:0], 4, 25, np.empty(4))  # no samples


def test_non_finite_prefix_columns_fall_back_to_numpy() -> None:
    """Products that overflow float64: the C learner declines and the numpy rounds decide, as they always did."""
    xs, ws = np.array([1e200, 2e200]), np.array([1e200, 1e200])
    assert cb_module._lloyd_native(xs, ws, 2, 25) is None
