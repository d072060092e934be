"""The clip-factor search and the codebook's sample must choose exactly what the plain, whole-matrix computation chose.

The search runs over row chunks (for the cache), looks nearest entries up in a
table (codec.codebook.NearestSearch) and picks the best factor by one min over
the grid; the reference here is the loop as first written, with bucketize.
"""

from __future__ import annotations

import pytest
import torch

from support.reference_codebook import CLIP_GRID, ref_best_clip, ref_search_scales
from uc_attest._internal.codec.codebook import learn_codebook
from uc_attest._internal.compress import gptq


def _whole_matrix_clip(wb: torch.Tensor, ib: torch.Tensor, amax: torch.Tensor, scales: torch.Tensor, codebook: torch.Tensor,
                       dtype: torch.dtype) -> torch.Tensor:  # fmt: skip
    """The search as written before chunking: every factor over the whole matrix, codes by bucketize."""
    return ref_best_clip(wb, ib, amax, scales, codebook, dtype, chunk_elements=None)


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


def _awkward_matrix(rows: int, cols: int, block: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights with every case the grid search must settle as the loop did: equal errors, zero and underflowing scales, NaN and overflow."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=gen) * torch.rand(rows, 1, generator=gen)
    w[0, :block] = 0.0  # all-zero block: every factor's error is 0, the first factor wins
    w[1, :block] = 0.5  # constant block: ties between factors
    w[2, :block] = 3.5e-8  # amax so small that float16(amax x factor) is 0 for the smaller factors
    w[3, :block] = torch.round(w[3, :block] * 4) / 4  # few distinct values: ties at midpoints
    w[4, 3] = float("nan")  # a NaN weight: that block's errors are NaN, it keeps its scale
    w[5, :block] = 1e30  # errors overflow to inf: that block keeps its scale too
    importance = torch.rand(cols, generator=gen) ** 4
    importance[:3] = 0.0
    return w, importance


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_clip_search_settles_ties_zeros_and_non_finite_errors_as_the_loop(bits: int, dtype: torch.dtype) -> None:
    w, importance = _awkward_matrix(40, 256, 32, bits)
    wb = gptq._blocked(w, 32).contiguous()
    ib = gptq._blocked(importance.reshape(1, -1), 32)
    amax = wb.abs().amax(-1).clamp(max=65504.0)
    scales = amax.to(torch.float16).to(torch.float32)
    gen = torch.Generator().manual_seed(bits)
    codebooks = [torch.sort(torch.randn(1 << bits, generator=gen)).values,
                 torch.linspace(-1, 1, 1 << bits)]  # fmt: skip
    if bits == 8:  # near-equal entries: table cells holding several midpoints
        near = torch.sort(torch.randn(256, generator=gen).clamp(-1, 1)).values
        near[-6:] = torch.nextafter(torch.ones(6), torch.zeros(6)) - torch.arange(6) * 1e-7
        codebooks.append(torch.sort(near).values)
    for codebook in codebooks:
        expected = _whole_matrix_clip(wb, ib, amax, scales, codebook, dtype)
        assert _bits(gptq._best_clip(wb, ib, amax, scales, codebook, dtype)) == _bits(expected)
        second = expected * 1.25  # the scales of a later round: a block with no finite error keeps these
        assert _bits(gptq._best_clip(wb, ib, amax, second, codebook, dtype)) == _bits(_whole_matrix_clip(wb, ib, amax, second, codebook, dtype))


def _bits(scales: torch.Tensor) -> bytes:
    """Bit for bit (NaN included: the NaN row keeps its NaN scale in both)."""
    return scales.contiguous().numpy().tobytes()


@pytest.mark.parametrize(("rows", "cols", "block"), [(300, 512, 64), (7, 100, 32), (6, 64, 128)])
def test_codebook_sample_is_the_learner_on_the_whole_normalised_matrix(rows: int, cols: int, block: int) -> None:
    """Gathering only the sampled weights gives the learner exactly the samples it drew from the whole matrix before."""
    w, importance = _awkward_matrix(rows, cols, block, rows)
    w = torch.nan_to_num(w, nan=0.25)
    wb = gptq._blocked(w, block).contiguous()
    ib = gptq._blocked(importance.reshape(1, -1), block)
    scales = wb.abs().amax(-1).clamp(max=65504.0).to(torch.float16).to(torch.float32)
    normalised = gptq._normalised(wb, scales.unsqueeze(-1))
    weights = ib * scales.unsqueeze(-1) ** 2 + 1e-20
    for bits in (3, 5):
        expected = learn_codebook(normalised, bits, weights=weights, seed=4, max_samples=gptq.CODEBOOK_SAMPLES)
        assert torch.equal(gptq._CodebookSample.of(wb, ib, 4).codebook(scales, bits), expected)


def test_search_scales_is_identical_on_every_run_and_chunking() -> None:
    w, importance = _awkward_matrix(64, 384, 64, 2)
    w = torch.nan_to_num(w, nan=0.0)
    first = gptq.search_scales(w, importance, 5, 64, torch.bfloat16, 0)
    gptq_chunk = gptq.GRID_CHUNK_ELEMENTS
    try:
        gptq.GRID_CHUNK_ELEMENTS = 1
        again = gptq.search_scales(w, importance, 5, 64, torch.bfloat16, 0)
    finally:
        gptq.GRID_CHUNK_ELEMENTS = gptq_chunk
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


def test_clip_grid_is_the_references() -> None:
    assert gptq.CLIP_GRID == CLIP_GRID


@pytest.mark.parametrize("bits", [3, 6])
def test_search_scales_matches_the_reference_on_a_realistic_matrix(bits: int) -> None:
    """Bf16-rounded weights with an outlier feature and Hessian-like importances: the same codebook and scales, bit for bit."""
    gen = torch.Generator().manual_seed(bits)
    w = (torch.randn(96, 320, generator=gen) * torch.rand(96, 1, generator=gen) * 0.05).to(torch.bfloat16).to(torch.float32)
    w[:, 7] *= 30  # an outlier input feature
    importance = torch.rand(320, generator=gen) ** 6 * 1e3 + 1.0
    codebook, scales = gptq.search_scales(w, importance, bits, 64, torch.bfloat16, 0)
    ref_codebook, ref_scales = ref_search_scales(w, importance, bits, 64, torch.bfloat16, 0)
    assert torch.equal(codebook, ref_codebook)  # here no cluster's float64 sum rounds differently enough to show in float32
    assert torch.equal(scales, ref_scales)
