"""hessian.gram: the X^T X that every calibration statistic is built from (bf16 products on the CPU, float32 panels otherwise)."""

from __future__ import annotations

import pytest
import torch

from uc_attest._internal.compress.hessian import BF16_GRAM_PANEL, GRAM_PANEL, _bf16_products, gram


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("width", [1, 7, GRAM_PANEL, GRAM_PANEL + 1, 2 * GRAM_PANEL + 5, 576, BF16_GRAM_PANEL + 3, 1536])
def test_gram_is_the_full_product_and_exactly_symmetric(width: int, dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(width)
    x = torch.randn(300, width, generator=generator).to(dtype)
    got = gram(x)
    x64 = x.to(torch.float64)
    want = x64.t() @ x64
    assert got.dtype == torch.float32 and got.shape == (width, width)
    assert torch.equal(got, got.t())  # mirrored, not recomputed: H is exactly symmetric
    assert torch.allclose(got.to(torch.float64), want, rtol=1e-5, atol=1e-3)
    assert torch.equal(gram(x), got)  # the same bits on a second call


def test_bf16_activations_lose_nothing_to_bf16_products() -> None:
    """bf16 inputs: every product is exact in float32, so the result is as close to float64 as float32 sums allow."""
    generator = torch.Generator().manual_seed(5)
    x = (torch.randn(2048, 576, generator=generator) * 3).to(torch.bfloat16)
    x64 = x.to(torch.float64)
    want = x64.t() @ x64
    got = gram(x).to(torch.float64)
    # float32 sums of 2048 terms: a few units in the last place of the largest partial sums, nothing like bf16's 2^-8
    assert float(((got - want).abs() / want.abs().max()).max()) < 1e-5


def test_bf16_product_mode_is_restored_even_on_error() -> None:
    matmul = torch.backends.mkldnn.matmul  # the switch of the pinned torch (older ones: gram's plain float32 products)
    before = matmul.fp32_precision
    with pytest.raises(RuntimeError), _bf16_products():
        assert matmul.fp32_precision == "bf16"
        raise RuntimeError("boom")
    assert matmul.fp32_precision == before


def test_gram_of_no_tokens_is_zero() -> None:
    assert torch.equal(gram(torch.empty(0, 5)), torch.zeros(5, 5))
    assert torch.equal(gram(torch.empty(0, 5, dtype=torch.bfloat16)), torch.zeros(5, 5))
