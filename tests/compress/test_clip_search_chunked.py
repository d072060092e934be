"""The clip-factor search runs over row chunks (for the cache) and must choose exactly what the whole-matrix search chose."""

from __future__ import annotations

import pytest
import torch

from uc_attest._internal.compress import gptq


def _whole_matrix_clip(wb: torch.Tensor, ib: torch.Tensor, amax: torch.Tensor, scales: torch.Tensor, codebook: torch.Tensor,
                       dtype: torch.dtype) -> torch.Tensor:  # fmt: skip
    """The search as written before chunking: every factor over the whole matrix."""
    best_err = torch.full_like(amax, float("inf"))
    best = scales
    for alpha in gptq.CLIP_GRID:
        s = (amax * alpha).to(torch.float16).to(torch.float32).unsqueeze(-1)
        codes = gptq.nearest_codes(gptq._normalised(wb, s), codebook)
        err = ((wb - gptq._dequant(codebook, codes, s, dtype)) ** 2 * ib).sum(-1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best = torch.where(better, s.squeeze(-1), best)
    return best


@pytest.mark.parametrize(("rows", "cols", "block", "dtype"), [(300, 512, 64, torch.bfloat16), (7, 1000, 32, torch.float16),
                                                             (129, 96, 128, torch.float32), (1, 64, 64, torch.bfloat16)])  # fmt: skip
def test_chunked_clip_search_is_identical(rows: int, cols: int, block: int, dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(rows + cols)
    w = torch.randn(rows, cols, generator=gen) * torch.rand(rows, 1, generator=gen)
    w[0, :block] = 0.0  # an all-zero block: scale 0
    w[-1, 3] = 40.0  # an outlier
    importance = torch.rand(cols, generator=gen) ** 4
    wb = gptq._blocked(w, block).contiguous()
    ib = gptq._blocked(importance.reshape(1, -1), block)
    amax = wb.abs().amax(-1).clamp(max=65504.0)
    scales = amax.to(torch.float16).to(torch.float32)
    codebook = torch.sort(torch.randn(16, generator=gen)).values
    expected = _whole_matrix_clip(wb, ib, amax, scales, codebook, dtype)
    for chunk in (1, 1000, 1 << 16):  # one row at a time, a few rows, the default
        monkeypatch.setattr(gptq, "GRID_CHUNK_ELEMENTS", chunk)
        assert torch.equal(gptq._best_clip(wb, ib, amax, scales, codebook, dtype), expected)
