"""The codebook's fast paths against the straightforward references of tests/support/reference_codebook.py.

NearestSearch must give exactly bucketize's codes on every input; the learner
by prefix sums the reference's codebook up to float64 summation rounding
(bit-identical where no cluster's sum rounds), and a codebook that depends only
on the multiset of samples.
"""

from __future__ import annotations

import hashlib
import math
from fractions import Fraction

import pytest
import torch

from support.reference_codebook import ref_learn_codebook, ref_nearest_codes
from uc_attest._internal.codec import codebook as cb_module
from uc_attest._internal.codec.codebook import NearestSearch, learn_codebook, nearest_codes, nearest_entries, sample_indices


def _codebooks(dtype: torch.dtype) -> list[torch.Tensor]:
    """Sorted codebooks of every width, with equal and near-equal entries (cells holding several midpoints)."""
    gen = torch.Generator().manual_seed(1)
    books = [torch.sort(torch.randn(1 << bits, generator=gen, dtype=dtype)).values for bits in range(1, 9)]
    one = torch.tensor(1.0, dtype=dtype)
    near = torch.sort(torch.randn(256, generator=gen, dtype=dtype).clamp(-1, 1)).values
    near[-8:] = torch.tensor([torch.nextafter(one, -one) * 0 + 1 - i * torch.finfo(dtype).eps for i in range(8)], dtype=dtype).flip(0)
    books.append(torch.sort(near).values)
    books.append(torch.tensor([-1.0, 0.0, 0.0, 0.0, 0.5, 0.5, 2.0, 2.0], dtype=dtype))  # duplicates
    books.append(torch.cat((torch.linspace(-1e-6, 1e-6, 30, dtype=dtype), torch.tensor([5.0, 1e4], dtype=dtype))))  # one dense cluster
    books.append(torch.tensor([-3.0, 7.0], dtype=dtype))  # a single midpoint
    return books


def _probe_values(codebook: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Random values around the codebook plus every entry, every midpoint, their neighbours and the special values."""
    gen = torch.Generator().manual_seed(seed)
    dtype = codebook.dtype
    span = float(codebook[-1] - codebook[0]) or 1.0
    mids = (codebook[1:] + codebook[:-1]) * 0.5
    inf = torch.tensor(math.inf, dtype=dtype)
    special = torch.tensor([0.0, -0.0, math.inf, -math.inf, math.nan, 1e-45, -1e-45, 1e30, -1e30], dtype=dtype)
    return torch.cat((
        (torch.rand(n, generator=gen, dtype=dtype) * 1.4 - 0.2) * span + float(codebook[0]),
        codebook, mids, torch.nextafter(mids, inf), torch.nextafter(mids, -inf), torch.nextafter(codebook, inf), special,
        mids.repeat(3),
    ))  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_table_search_gives_bucketize_codes_on_every_value(dtype: torch.dtype) -> None:
    for i, codebook in enumerate(_codebooks(dtype)):
        values = _probe_values(codebook, 20000, i)
        expected = ref_nearest_codes(values, codebook)
        table = NearestSearch.build(codebook, values)
        if codebook.numel() == 2:  # one midpoint: no table, bucketize
            assert table is None
        else:
            assert table is not None
            assert torch.equal(table.codes(values), expected), i
            assert torch.equal(table.entries(values), codebook[expected]), i
        assert torch.equal(nearest_codes(values, codebook), expected), i  # nearest_codes uses the table from 16384 values on
        assert torch.equal(nearest_entries(codebook, values)(values.reshape(7, -1) if values.numel() % 7 == 0 else values),
                           codebook[expected].reshape(7, -1) if values.numel() % 7 == 0 else codebook[expected])  # fmt: skip


def test_nan_free_table_agrees_where_there_is_no_nan() -> None:
    for i, codebook in enumerate(_codebooks(torch.float32)):
        values = _probe_values(codebook, 5000, i)
        values = values[~torch.isnan(values)]
        table = NearestSearch.build(codebook, values, nan_free=True)
        if codebook.numel() == 2:
            assert table is None
        else:
            assert table is not None and torch.equal(table.entries(values), codebook[ref_nearest_codes(values, codebook)])


def test_table_search_declines_what_it_cannot_serve_and_bucketize_answers() -> None:
    values = torch.randn(20000, generator=torch.Generator().manual_seed(3))
    unsorted = torch.tensor([2.0, -1.0, 0.5, 0.0])  # midpoints out of order: bucketize's answer is its own
    assert NearestSearch.build(unsorted, values) is None
    assert torch.equal(nearest_codes(values, unsorted), ref_nearest_codes(values, unsorted))
    for codebook in (torch.tensor([1.0, 1.0, 1.0, 1.0]), torch.tensor([math.nan, 0.0, 1.0, 2.0])):
        assert NearestSearch.build(codebook, values) is None
        assert torch.equal(nearest_codes(values, codebook), ref_nearest_codes(values, codebook))
    assert NearestSearch.build(torch.tensor([-1.0, 1.0], dtype=torch.float64), values) is None  # dtypes differ
    assert torch.equal(nearest_codes(values, torch.tensor([-1.0, 0.0, 1.0, 3.0])), ref_nearest_codes(values, torch.tensor([-1.0, 0.0, 1.0, 3.0])))


def _learner_inputs() -> list[tuple[str, torch.Tensor, torch.Tensor | None]]:
    gen = torch.Generator().manual_seed(7)
    normal = torch.randn(30000, generator=gen).clamp(-1, 1)
    heavy = torch.rand(30000, generator=gen) ** 12 * 1e6  # importances a million times apart
    heavy[::5] = 0.0  # zero weights
    grid = torch.round(torch.randn(30000, generator=gen) * 6).clamp(-12, 12) / 12  # 25 distinct values: ties, duplicates
    nonfinite = normal.clone()
    nonfinite[::97] = math.nan
    nonfinite[1::89] = math.inf
    return [
        ("normal", normal, None),
        ("heavy importance, zero weights", normal, heavy),
        ("few distinct values", grid, torch.rand(30000, generator=gen)),
        ("few distinct values, unit weights", grid, None),
        ("non-finite samples dropped", nonfinite, heavy),
        ("tiny: fewer samples than entries", torch.tensor([0.3, -0.2, 0.3, 0.9]), torch.tensor([1.0, 0.0, 2.0, 0.5])),
        ("one sample", torch.tensor([0.25]), None),
        ("all weights zero", normal[:500], torch.zeros(500)),
    ]


@pytest.mark.parametrize("bits", [2, 3, 5, 8])
def test_learner_matches_the_reference_up_to_summation_rounding(bits: int) -> None:
    for name, values, weights in _learner_inputs():
        ours = learn_codebook(values, bits, weights=weights)
        ref = ref_learn_codebook(values, bits, weights=weights)
        assert ours.dtype == torch.float32 and bool((ours[1:] > ours[:-1]).all()), name
        assert float((ours - ref).abs().max()) <= 1e-6, name  # the reference's own float64 summation error, in float32


def test_learner_is_bit_identical_where_no_sum_rounds() -> None:
    """Dyadic values with unit weights: the reference's sums hardly round, so the two must agree bit for bit.

    The tie rule is exercised: with entries 0 and 2, the sample 1 lies on the
    midpoint and belongs to the lower entry (centroids 1/3 and 2, not 0 and 5/3).
    An odd number of samples keeps every weighted quantile (i+1)/n off the
    targets (2j+1)/2k: with an even n some coincide exactly, and which sample
    starts an entry is then decided by the last bit of each implementation's
    rounding (measured: a different local optimum at 64 entries).
    """
    values = torch.tensor([0.0, 0.0, 1.0, 2.0, 2.0])
    ours = learn_codebook(values, 1)
    assert torch.equal(ours, ref_learn_codebook(values, 1))
    assert torch.allclose(ours, torch.tensor([1 / 3, 2.0]))
    gen = torch.Generator().manual_seed(11)
    for bits in (2, 4, 6):
        dyadic = torch.randint(-64, 65, (4095,), generator=gen).to(torch.float32) / 64
        assert torch.equal(learn_codebook(dyadic, bits), ref_learn_codebook(dyadic, bits)), bits


def test_learner_depends_only_on_the_multiset_of_samples() -> None:
    gen = torch.Generator().manual_seed(5)
    values = torch.round(torch.randn(20000, generator=gen) * 8) / 8
    values[values == 0] = -0.0  # the sign of zero must not matter either
    weights = torch.rand(20000, generator=gen) * 100
    first = learn_codebook(values, 4, weights=weights)
    perm = torch.randperm(20000, generator=gen)
    flipped = values[perm].clone()
    flipped[flipped == 0] = 0.0
    assert torch.equal(first, learn_codebook(flipped, 4, weights=weights[perm]))
    assert torch.equal(first, learn_codebook(values, 4, weights=weights))  # and the same on every run


def test_learner_subsamples_exactly_as_before() -> None:
    gen = torch.Generator().manual_seed(9)
    values = torch.randn(5000, generator=gen)
    weights = torch.rand(5000, generator=gen)
    assert torch.equal(sample_indices(5000, 1000, 3), torch.randperm(5000, generator=torch.Generator().manual_seed(3))[:1000])
    ours = learn_codebook(values, 4, weights=weights, max_samples=1000, seed=3)
    idx = torch.randperm(5000, generator=torch.Generator().manual_seed(3))[:1000]
    assert torch.equal(ours, learn_codebook(values[idx], 4, weights=weights[idx]))
    assert float((ours - ref_learn_codebook(values, 4, weights=weights, max_samples=1000, seed=3)).abs().max()) <= 1e-6


def test_exact_prefix_sums_are_the_true_sums_rounded() -> None:
    """Run sums against exact rational arithmetic, over values spanning 18 orders of magnitude with mixed signs."""
    gen = torch.Generator().manual_seed(13)
    v = (torch.rand(3000, generator=gen, dtype=torch.float64) - 0.3) * 10.0 ** torch.randint(-12, 7, (3000,), generator=gen)
    w = torch.rand(3000, generator=gen, dtype=torch.float64) ** 20 * 1e6 + 1e-12
    sums = cb_module._ExactPrefix([v, w])
    bounds = torch.sort(torch.randint(0, 3001, (40,), generator=gen)).values
    bounds = torch.cat((torch.tensor([0]), bounds, torch.tensor([3000])))
    got = sums.between(bounds)
    for j in range(bounds.numel() - 1):
        a, b = int(bounds[j]), int(bounds[j + 1])
        for column, data in enumerate((v, w)):
            exact = sum((Fraction(float(t)) for t in data[a:b]), Fraction(0))
            peak = float(data.abs().max())
            assert abs(Fraction(float(got[j, column])) - exact) <= abs(exact) * Fraction(2) ** -51 + Fraction(peak) * Fraction(2) ** -80
    total = float(sums.inclusive(1)[-1])
    assert abs(total - math.fsum(w.tolist())) <= total * 2.0**-51  # the correctly rounded sum, within one rounding


def test_learned_codebooks_are_pinned_bit_for_bit() -> None:
    """Codebooks the learner gave before its Lloyd rounds moved from torch to numpy (same float64 operations):
    a digest of seven, widths 2-8, with and without ties, so that a change of the learner's arithmetic is seen.

    Inputs from torch.rand only (integer generator, exact on every CPU) and elementwise float32 arithmetic.
    """
    gen = torch.Generator().manual_seed(2026)
    digest = hashlib.sha256()
    for bits in range(2, 9):
        values = (torch.rand(50000, generator=gen) - 0.5) * torch.rand(50000, generator=gen) * 1.2
        if bits % 2:
            values = torch.round(values * 16) / 16  # many exact ties
        weights = torch.rand(50000, generator=gen) ** 8 * 1e3
        digest.update(learn_codebook(values, bits, weights=weights, max_samples=1 << 15, seed=bits).numpy().tobytes())
    assert digest.hexdigest() == "0f3543db95a25b0a2feb78fe1284ed3c588cc7c87d6002fe776971eded6a7ba9"
