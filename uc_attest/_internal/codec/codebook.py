"""Learning a non-uniform codebook and assigning codes.

Codebooks are sorted ascending so that nearest-entry assignment is a binary search
over midpoints (deterministic, ties go to the lower entry's right boundary rule of
``torch.bucketize``). The data-free learner is a weighted Lloyd (k-means) over
block-normalised weights; the calibrated compressor supplies Hessian-derived
weights instead of uniform ones.
"""

from __future__ import annotations

import torch


def nearest_codes(normalised: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codebook entry for every element (codebook sorted ascending)."""
    mids = (codebook[1:] + codebook[:-1]) * 0.5
    return torch.bucketize(normalised.contiguous(), mids.contiguous(), right=False)


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
    """
    k = 1 << bits
    x = values.detach().reshape(-1).to(torch.float32)
    w = torch.ones_like(x) if weights is None else weights.detach().reshape(-1).to(torch.float32)
    if x.numel() > max_samples:
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randperm(x.numel(), generator=gen)[:max_samples]
        x, w = x[idx], w[idx]
    finite = torch.isfinite(x) & torch.isfinite(w)
    x, w = x[finite], w[finite].clamp_min(0)
    if x.numel() == 0:
        return torch.linspace(-1, 1, k, dtype=torch.float32)
    # initialise at weighted quantiles: a good start that Lloyd then refines
    order = torch.argsort(x)
    xs, ws = x[order].to(torch.float64), w[order].to(torch.float64) + 1e-12
    cdf = torch.cumsum(ws, 0)
    cdf = cdf / cdf[-1]
    targets = (torch.arange(k, dtype=torch.float64) + 0.5) / k
    cb = xs[torch.searchsorted(cdf, targets).clamp_max(xs.numel() - 1)]
    for _ in range(iterations):
        cb, _ = torch.sort(cb)
        assign = nearest_codes(xs, cb)
        num = torch.zeros(k, dtype=torch.float64).index_add_(0, assign, xs * ws)
        den = torch.zeros(k, dtype=torch.float64).index_add_(0, assign, ws)
        new = torch.where(den > 0, num / den.clamp_min(1e-30), cb)
        if torch.allclose(new, cb, rtol=0, atol=1e-9):
            cb = new
            break
        cb = new
    cb = torch.sort(cb.to(torch.float32)).values
    # keep entries distinct so that midpoints are strictly increasing
    for i in range(1, k):
        if cb[i] <= cb[i - 1]:
            cb[i] = torch.nextafter(cb[i - 1], torch.tensor(float("inf")))
    return cb.contiguous()


def assign_codes(normalised: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """uint8 codes of the nearest entries."""
    return nearest_codes(normalised, codebook).to(torch.uint8)
