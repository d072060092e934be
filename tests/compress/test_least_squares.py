"""Least-squares grid refits: checked against an explicit per-row solve, and never worse inside the coder."""

from __future__ import annotations

import pytest
import torch

from uc_attest._internal.codec.encoded import reconstruct_encoded
from uc_attest._internal.codec.params import CodecParams
from uc_attest._internal.compress.gptq import gptq_quantize, hessian_error
from uc_attest._internal.compress.least_squares import refit_block_scales


def _hessian(cols: int, g: torch.Generator) -> torch.Tensor:
    x = torch.randn(4 * cols, cols, generator=g, dtype=torch.float64) * (torch.rand(cols, generator=g, dtype=torch.float64) + 0.2)
    x[:, : cols // 4] += torch.randn(4 * cols, 1, generator=g, dtype=torch.float64)  # correlated inputs couple the blocks
    return x.t() @ x / x.shape[0]


@pytest.mark.parametrize("cols, block", [(96, 32), (100, 32)])  # the second leaves a partial last block
def test_block_scales_match_an_explicit_least_squares_solve(cols: int, block: int) -> None:
    g = torch.Generator().manual_seed(5)
    rows = 6
    w = torch.randn(rows, cols, generator=g, dtype=torch.float64)
    values = torch.randint(-15, 16, (rows, cols), generator=g).to(torch.float64) / 15
    h = _hessian(cols, g)
    nb = -(-cols // block)
    got = refit_block_scales(w, values, torch.ones(rows, nb), h, block)
    chol = torch.linalg.cholesky(h)  # tr(D H D^T) = |D L|^2 row by row
    for r in range(rows):
        design = torch.zeros(cols, nb, dtype=torch.float64)
        design[torch.arange(cols), torch.arange(cols) // block] = values[r]
        expected = torch.linalg.lstsq(chol.t() @ design, chol.t() @ w[r]).solution
        # the ridge towards the current scales (1e-6 of the Gram diagonal) moves the solution by ~1e-6
        torch.testing.assert_close(got[r], expected, rtol=1e-4, atol=1e-5)


def test_block_scales_recover_the_scales_that_made_the_weights() -> None:
    g = torch.Generator().manual_seed(6)
    rows, cols, block = 4, 128, 64
    values = torch.randint(-7, 8, (rows, cols), generator=g).to(torch.float64) / 7
    true = torch.rand(rows, cols // block, generator=g, dtype=torch.float64) + 0.5
    w = values * torch.repeat_interleave(true, block, dim=1)
    got = refit_block_scales(w, values, torch.ones_like(true), _hessian(cols, g), block)
    torch.testing.assert_close(got, true, rtol=1e-5, atol=1e-6)


def test_an_all_zero_block_keeps_its_scale() -> None:
    g = torch.Generator().manual_seed(7)
    values = torch.randint(-7, 8, (2, 128), generator=g).to(torch.float64) / 7
    values[1, 64:] = 0.0
    current = torch.full((2, 2), 0.25, dtype=torch.float64)
    got = refit_block_scales(torch.randn(2, 128, generator=g, dtype=torch.float64), values, current, _hessian(128, g), 64)
    assert torch.isfinite(got).all()
    assert float(got[1, 1]) == pytest.approx(0.25)


@pytest.mark.parametrize("dtype, cols", [("bfloat16", 128), ("float32", 160)])
def test_refined_grid_is_never_worse_and_reconstructs_canonically(dtype: str, cols: int) -> None:
    g = torch.Generator().manual_seed(8)
    w = torch.randn(48, cols, generator=g) * 0.05
    h = _hessian(cols, g).to(torch.float32)
    params = CodecParams(bits=4, block_size=64, block_axis=1, dtype=dtype)
    plain, plain_codes = gptq_quantize(w, params, h)
    refined, codes = gptq_quantize(w, params, h, refit=True)
    before = hessian_error(w, reconstruct_encoded(plain, plain_codes).float(), h.double())
    after = hessian_error(w, reconstruct_encoded(refined, codes).float(), h.double())
    assert after < before  # on correlated inputs the full-Hessian grid does better than the diagonal one
    assert refined.scales.dtype == torch.float16 and torch.all(refined.codebook[1:] > refined.codebook[:-1])
    from uc_attest._internal.codec.reconstruct import reconstruct

    assert torch.equal(reconstruct(refined.packed_codes, refined.codebook, refined.scales, refined.shape, params),
                       reconstruct_encoded(refined, codes))  # fmt: skip
