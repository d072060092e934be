"""Learning a non-uniform codebook and assigning codes.

Codebooks are sorted ascending so that nearest-entry assignment is a search over
midpoints: a value's code is the number of midpoints strictly below it, so a
value equal to a midpoint goes to the lower entry (``torch.bucketize`` with
``right=False``). The data-free learner is a weighted Lloyd (k-means) over
block-normalised weights; the calibrated compressor supplies Hessian-derived
weights instead of uniform ones.

Both are on the compressor's hot path (the clip search assigns codes nine times
per weight, the learner runs twice per map and option), so both avoid the
per-value binary search, whose every step is an unpredictable branch (measured
here, AVX512 CPU: 17-45 ns per value at 8-256 entries): :class:`NearestSearch`
looks codes up in a uniform table and the learner sums sorted samples by
exact prefix sums. The table gives exactly bucketize's codes; the learner the
codebook of the Lloyd rounds by bucketize and index_add up to the rounding of
their float64 sums (tests/test_codebook_search.py pins both against that code).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

TABLE_CELLS_PER_ENTRY = 16  # cells of NearestSearch's table per codebook entry ...
MAX_TABLE_CELLS = 4096  # ... at most (the table stays in the CPU's L1/L2 cache)
SEARCH_BY_TABLE_FROM = 1 << 14  # values per nearest_codes call from which building the table pays

try:
    from . import _lloyd as _native_lloyd  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - a source tree without the built extension: the numpy rounds
    _native_lloyd = None
_native_lloyd_max_entries = 4096  # _lloyd.c's MAX_ENTRIES


def nearest_codes(normalised: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index (int64) of the nearest codebook entry for every element (codebook sorted ascending)."""
    if normalised.numel() >= SEARCH_BY_TABLE_FROM:
        table = NearestSearch.build(codebook, normalised)
        if table is not None:
            return table.codes(normalised)
    return _bucketize(normalised, _midpoints(codebook))


def nearest_entries(codebook: torch.Tensor, like: torch.Tensor, nan_free: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    """``values -> codebook[nearest_codes(values, codebook)]`` (a new tensor), for many calls on values like ``like``.

    The table is built once. ``nan_free``: the caller guarantees that no
    value will be NaN (one pass fewer per call; see NearestSearch).
    """
    table = NearestSearch.build(codebook, like, nan_free)
    if table is not None:
        return table.entries
    mids = _midpoints(codebook)
    return lambda values: codebook[_bucketize(values, mids)]


def _midpoints(codebook: torch.Tensor) -> torch.Tensor:
    return ((codebook[1:] + codebook[:-1]) * 0.5).contiguous()


def _bucketize(values: torch.Tensor, mids: torch.Tensor, out_int32: bool = False) -> torch.Tensor:
    return torch.bucketize(values.contiguous(), mids, right=False, out_int32=out_int32)


@dataclass(frozen=True)
class NearestSearch:
    """Nearest codes as ``torch.bucketize(values, midpoints, right=False)`` gives them, by a table lookup in a few vector passes.

    A monotone map ``cell`` sends a value to one of ``cells`` equal cells over
    [first midpoint, last midpoint] (clamped at both ends). Monotone means
    ``m >= v`` implies ``cell(m) >= cell(v)``, so for a value ``v`` in cell
    ``j`` every midpoint of an earlier cell is below ``v`` and none of a later
    cell is: its code is ``below[j]`` (the midpoints of earlier cells) plus
    those of cell ``j`` itself that lie below ``v``. Where cell ``j`` holds at
    most one midpoint, that is one comparison with ``first[j]`` (the midpoint
    following the earlier cells, +inf past the last), and the code is entry
    ``2 j + (v > first[j])`` of a table of pairs (``below[j]``,
    ``below[j] + 1``). The few values in cells that hold two midpoints or
    more (near-equal entries) are searched by bucketize. The argument needs no
    error bound on the float arithmetic of ``cell``, only that it is monotone
    and the same function for midpoints and values (IEEE subtraction,
    multiplication by a positive constant, clamping and truncation are). NaN,
    which bucketize places after every midpoint, gets a cell of its own past
    the last, unless the caller vouches that there is none (``nan_free``: a NaN
    would then fail the lookup or get a wrong code).
    """

    codebook: torch.Tensor
    mids: torch.Tensor
    lo: float
    scale: float
    cells: int
    nan_free: bool
    first: torch.Tensor  # the values' dtype [cells + 1]
    pair_codes: torch.Tensor  # int32 [2 (cells + 1)]
    pair_entries: torch.Tensor  # the codebook's dtype [2 (cells + 1)]
    crowded: torch.Tensor | None  # bool [cells + 1], None where no cell holds two midpoints

    @classmethod
    def build(cls, codebook: torch.Tensor, like: torch.Tensor, nan_free: bool = False) -> NearestSearch | None:
        """The table for a sorted codebook and values like ``like``; None where bucketize itself is the better search.

        That is on a GPU (no branch to mispredict there, and each small kernel
        costs its launch), for values of another dtype than the codebook's, and
        where there is no table to build (fewer than two distinct midpoints,
        or midpoints out of order).
        """
        mids = _midpoints(codebook)
        if codebook.device.type != "cpu" or like.device.type != "cpu" or like.dtype != mids.dtype or mids.numel() < 2:
            return None
        if mids.dtype not in (torch.float32, torch.float64):
            return None
        lo, hi = float(mids[0]), float(mids[-1])
        cells = min(MAX_TABLE_CELLS, TABLE_CELLS_PER_ENTRY * codebook.numel())
        scale = (cells - 0.5) / (hi - lo) if hi > lo else math.inf  # the last midpoint inside the last cell
        if not (math.isfinite(lo) and math.isfinite(hi)) or scale >= torch.finfo(mids.dtype).max:
            return None
        if not bool((mids[1:] >= mids[:-1]).all()):
            return None
        empty = torch.empty(0)
        of_mids = cls(codebook, mids, lo, scale, cells, False, empty, empty, empty, None)._cell(mids)
        below = torch.searchsorted(of_mids, torch.arange(cells + 1, dtype=torch.int32), out_int32=True)
        first = torch.cat((mids, torch.tensor([math.inf], dtype=mids.dtype)))[below.long()]
        pairs = torch.stack((below, (below + 1).clamp_max(codebook.numel() - 1)), 1).reshape(-1)
        crowded = torch.bincount(of_mids, minlength=cells + 1) >= 2
        return cls(codebook, mids, lo, scale, cells, nan_free, first, pairs, codebook[pairs.long()].contiguous(),
                   crowded if bool(crowded.any()) else None)  # fmt: skip

    def _cell(self, values: torch.Tensor) -> torch.Tensor:
        t = torch.sub(values, self.lo)
        t.mul_(self.scale).clamp_(0, self.cells - 1)
        if not self.nan_free:
            t.nan_to_num_(nan=self.cells)
        return t.to(torch.int32)

    def _pairs(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every value's index into the pair tables, and the positions (or None) whose cell is crowded."""
        cell = self._cell(flat)
        above = torch.gt(flat, self.first.index_select(0, cell), out=torch.empty_like(cell))  # 0/1, not a slow bool tensor
        index = above.add_(cell, alpha=2)
        if self.crowded is None:
            return index, None
        where = torch.nonzero(self.crowded.index_select(0, cell)).squeeze(1)
        return index, (where if where.numel() else None)

    def codes(self, values: torch.Tensor) -> torch.Tensor:
        """int64 codes, shaped like ``values``."""
        flat = values.reshape(-1)
        index, crowded = self._pairs(flat)
        codes = self.pair_codes.index_select(0, index).to(torch.int64)
        if crowded is not None:
            codes[crowded] = _bucketize(flat[crowded], self.mids)
        return codes.reshape(values.shape)

    def entries(self, values: torch.Tensor) -> torch.Tensor:
        """The nearest entries themselves (``codebook[codes]``, a new tensor), shaped like ``values``."""
        flat = values.reshape(-1)
        index, crowded = self._pairs(flat)
        entries = self.pair_entries.index_select(0, index)
        if crowded is not None:
            entries[crowded] = self.codebook[_bucketize(flat[crowded], self.mids)]
        return entries.reshape(values.shape)


@functools.lru_cache(maxsize=32)
def sample_indices(numel: int, max_samples: int, seed: int) -> torch.Tensor:
    """The elements :func:`learn_codebook` learns from when there are more than ``max_samples``: a seeded permutation's head.

    Cached (read-only): the permutation of a wide matrix costs 10-20 ms, and the
    coder asks for the same few hundreds of times (every map of a shape,
    every round and option).
    """
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(numel, generator=gen)[:max_samples].clone()


def learn_codebook(
    values: torch.Tensor,
    bits: int,
    weights: torch.Tensor | None = None,
    iterations: int = 25,
    max_samples: int = 1 << 20,
    seed: int = 0,
) -> torch.Tensor:
    """Weighted 1-D k-means with 2**bits centroids; returns a sorted float32 codebook.

    ``values`` are block-normalised weights (roughly in [-1, 1]); ``weights`` their
    importance. Large tensors are subsampled deterministically for speed.

    The samples are sorted once, so each Lloyd round's assignment (nearest
    entry, a value on a midpoint to the lower entry) is k-1 cut points found by
    binary search, and each cluster's weighted sum a difference of prefix sums:
    O(k log n) a round instead of O(n log k). The prefix sums are exact
    (:class:`_ExactPrefix`), so the codebook depends only on the samples, not
    on their order, and is as near the exact centroids as float64 allows.
    """
    k = 1 << bits
    x = values.detach().reshape(-1).to(device="cpu", dtype=torch.float32)
    w = torch.ones_like(x) if weights is None else weights.detach().reshape(-1).to(device="cpu", dtype=torch.float32)
    if x.numel() > max_samples:
        idx = sample_indices(x.numel(), max_samples, seed)
        x, w = x.index_select(0, idx), w.index_select(0, idx)
    if not (math.isfinite(float(x.sum())) and math.isfinite(float(w.sum()))):  # finite sums: every value is finite
        finite = torch.isfinite(x) & torch.isfinite(w)
        x, w = x[finite], w[finite]
    if x.numel() == 0:
        return torch.linspace(-1, 1, k, dtype=torch.float32, device=values.device)
    # sorted once (any order of equal values gives the same result, see above); +0.0 makes -0.0 and 0.0 one value
    order = torch.from_numpy(np.argsort(x.numpy(), kind="quicksort"))
    xs = x.index_select(0, order).to(torch.float64) + 0.0
    ws = w.index_select(0, order).clamp_min(0).to(torch.float64) + 1e-12
    entries = _lloyd_native(xs.numpy(), ws.numpy(), k, iterations)
    if entries is None:
        entries = _lloyd(xs, ws, k, iterations)
    cb = torch.sort(torch.from_numpy(entries).to(torch.float32)).values
    # keep entries distinct so that midpoints are strictly increasing
    if not bool((cb[1:] > cb[:-1]).all()):
        for i in range(1, k):
            if cb[i] <= cb[i - 1]:
                cb[i] = torch.nextafter(cb[i - 1], torch.tensor(float("inf")))
    return cb.contiguous().to(values.device)


def _lloyd_native(xs: np.ndarray, ws: np.ndarray, k: int, iterations: int) -> np.ndarray | None:
    """_lloyd's entries from the C learner (codec/_lloyd.c, the same float64 operations); None where it does not apply.

    That is without the built extension, with ``UC_ATTEST_NATIVE=0``, or
    where a column of the prefix sums is not finite (the numpy path then
    runs and fails or succeeds as it always did).
    """
    if _native_lloyd is None or os.environ.get("UC_ATTEST_NATIVE", "1") == "0" or k > _native_lloyd_max_entries:
        return None
    entries = np.empty(k, dtype=np.float64)
    return entries if _native_lloyd.learn(np.ascontiguousarray(xs), np.ascontiguousarray(ws), k, iterations, entries) else None


def _lloyd(xs: torch.Tensor, ws: torch.Tensor, k: int, iterations: int) -> np.ndarray:
    """Weighted Lloyd rounds on sorted float64 samples ``xs`` (weights ``ws``), from weighted quantiles: the k entries."""
    n = xs.numel()
    sums = _ExactPrefix([xs * ws, ws])  # per cluster: the weighted sum of its values, and its weight
    # initialise at weighted quantiles: a good start that Lloyd then refines
    cdf = sums.inclusive(1)
    cdf = cdf / cdf[-1]
    targets = (torch.arange(k, dtype=torch.float64) + 0.5) / k
    entries = xs[torch.searchsorted(cdf, targets).clamp_max(n - 1)].numpy()
    # the Lloyd rounds in numpy: a dozen operations on k values each, where torch's per-call overhead was most of
    # the learner's time; the same float64 operations in the same order, so the same entries
    samples, edges = xs.numpy(), np.array([0, n], dtype=np.int64)
    for _ in range(iterations):
        entries = np.sort(entries)
        # the samples of entry j are those above mid j-1 and at most mid j
        cuts = np.searchsorted(samples, (entries[1:] + entries[:-1]) * 0.5, side="right")
        num, den = sums.between(np.concatenate((edges[:1], cuts, edges[1:]))).T
        new = np.where(den > 0, num / np.maximum(den, 1e-30), entries)
        converged = bool((np.abs(new - entries) <= 1e-9).all())  # torch.allclose(rtol=0, atol=1e-9) on finite values
        entries = new
        if converged:
            break
    return entries


class _ExactPrefix:
    """Prefix sums of float64 columns of n values, exact: every sum of a run is the true sum, rounded once (or nearly).

    Each value is split exactly into two integer limbs of its column's
    power-of-two unit (its top bits, then the next ``62 - log2 n``) and a
    remainder below 2**-(62 - log2 n) units. The units are chosen so that the
    limbs' int64 running sums cannot overflow, so they are exact, and a run's
    sum is exact up to the ignored remainders: for 65,536 samples under 1e-27
    of the column's largest value each. Plain float64 prefix sums lose a
    small cluster's sum against the large running total instead (with
    Hessian importances a million times apart, down to a negative weight),
    and depend on the order of equal values.
    """

    def __init__(self, columns: list[torch.Tensor]) -> None:
        n = columns[0].numel()
        self._low_bits = 62 - n.bit_length()  # n values below 2**low_bits each sum below 2**62
        limbs, units = [], []
        for v in columns:
            low_end, high_end = torch.aminmax(v) if n else (torch.zeros(()), torch.zeros(()))
            peak = max(-float(low_end), float(high_end))
            exponent = (math.frexp(peak)[1] if peak > 0 else 0) - self._low_bits  # |v| < 2**(exponent + low_bits)
            scaled = v * 2.0**-exponent  # exact: a power of two
            high = torch.round(scaled)
            limbs += [high, (scaled - high).mul_(2.0**self._low_bits).round_()]  # scaled - high is exact, in [-0.5, 0.5]
            units.append(2.0**exponent)
        self._unit = np.array(units, dtype=np.float64)
        self._prefix = np.zeros((n + 1, len(limbs)), dtype=np.int64)
        for j, limb in enumerate(limbs):  # integers below 2**62 in float64: the conversion is exact
            np.cumsum(limb.numpy().astype(np.int64), out=self._prefix[1:, j])

    def inclusive(self, column: int) -> torch.Tensor:
        """The sums of the first i+1 values of ``column``, for every i."""
        limbs = torch.from_numpy(self._prefix[1:, 2 * column : 2 * column + 2]).to(torch.float64)
        return (limbs[:, 0] + limbs[:, 1] * 2.0**-self._low_bits) * float(self._unit[column])

    def between(self, bounds: np.ndarray | torch.Tensor) -> np.ndarray:
        """[len(bounds) - 1, columns]: the sums of the runs [bounds[j], bounds[j+1]) (``bounds`` non-decreasing int64)."""
        prefix = self._prefix[np.asarray(bounds, dtype=np.int64)]
        limbs = (prefix[1:] - prefix[:-1]).astype(np.float64)
        return (limbs[:, 0::2] + limbs[:, 1::2] * 2.0**-self._low_bits) * self._unit


def assign_codes(normalised: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """uint8 codes of the nearest entries."""
    return nearest_codes(normalised, codebook).to(torch.uint8)
