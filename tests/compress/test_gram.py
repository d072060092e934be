"""hessian.gram: the panelled X^T X that every calibration statistic is built from."""

from __future__ import annotations

import pytest
import torch

from uc_attest._internal.compress.hessian import GRAM_PANEL, gram


@pytest.mark.parametrize("width", [1, 7, GRAM_PANEL, GRAM_PANEL + 1, 2 * GRAM_PANEL + 5, 576])
def test_gram_is_the_full_product_and_exactly_symmetric(width: int) -> None:
    generator = torch.Generator().manual_seed(width)
    x = torch.randn(300, width, generator=generator).to(torch.bfloat16)
    got = gram(x)
    x64 = x.to(torch.float64)
    want = x64.t() @ x64
    assert got.dtype == torch.float32 and got.shape == (width, width)
    assert torch.equal(got, got.t())  # mirrored, not recomputed: H is exactly symmetric
    assert torch.allclose(got.to(torch.float64), want, rtol=1e-5, atol=1e-3)


def test_gram_of_no_tokens_is_zero() -> None:
    assert torch.equal(gram(torch.empty(0, 5)), torch.zeros(5, 5))
