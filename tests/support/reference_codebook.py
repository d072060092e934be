"""The codebook search as first written, kept as the reference for the fast paths (tests and bench/codebook_search_time.py).

Straightforward on purpose: codes by ``torch.bucketize`` over the midpoints
(a value on a midpoint goes to the lower entry), Lloyd rounds that assign every
sample and sum clusters by ``index_add``, the clip grid as a loop over factors
with a strict ``err < best_err``, the codebook learnt from the whole normalised
matrix.
"""

from __future__ import annotations

import torch

CLIP_GRID = tuple(1.0 - 0.03 * i for i in range(9))


def ref_nearest_codes(values: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    mids = (codebook[1:] + codebook[:-1]) * 0.5
    return torch.bucketize(values.contiguous(), mids.contiguous(), right=False)


def ref_learn_codebook(values: torch.Tensor, bits: int, weights: torch.Tensor | None = None, iterations: int = 25,
                       max_samples: int = 1 << 20, seed: int = 0) -> torch.Tensor:  # fmt: skip
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
    order = torch.argsort(x)
    xs, ws = x[order].to(torch.float64), w[order].to(torch.float64) + 1e-12
    cdf = torch.cumsum(ws, 0)
    cdf = cdf / cdf[-1]
    targets = (torch.arange(k, dtype=torch.float64) + 0.5) / k
    cb = xs[torch.searchsorted(cdf, targets).clamp_max(xs.numel() - 1)]
    for _ in range(iterations):
        cb, _ = torch.sort(cb)
        assign = ref_nearest_codes(xs, cb)
        num = torch.zeros(k, dtype=torch.float64).index_add_(0, assign, xs * ws)
        den = torch.zeros(k, dtype=torch.float64).index_add_(0, assign, ws)
        new = torch.where(den > 0, num / den.clamp_min(1e-30), cb)
        if torch.allclose(new, cb, rtol=0, atol=1e-9):
            cb = new
            break
        cb = new
    cb = torch.sort(cb.to(torch.float32)).values
    for i in range(1, k):
        if cb[i] <= cb[i - 1]:
            cb[i] = torch.nextafter(cb[i - 1], torch.tensor(float("inf")))
    return cb.contiguous()


def ref_normalised(w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return torch.where(s != 0, w / torch.where(s != 0, s, 1.0), 0.0)


def ref_best_clip(wb: torch.Tensor, ib: torch.Tensor, amax: torch.Tensor, scales: torch.Tensor, codebook: torch.Tensor,
                  dtype: torch.dtype, chunk_elements: int | None = None) -> torch.Tensor:  # fmt: skip
    """Per block, the first factor of CLIP_GRID with the lowest weighted error; ``chunk_elements``: rows at a time (None: all)."""
    rows = wb.shape[0]
    step = rows if chunk_elements is None else max(1, chunk_elements // max(1, wb[0].numel()))
    best = torch.empty_like(scales)
    for r0 in range(0, rows, step):
        w, a = wb[r0 : r0 + step], amax[r0 : r0 + step]
        best_err = torch.full_like(a, float("inf"))
        chosen = scales[r0 : r0 + step]
        for alpha in CLIP_GRID:
            s = (a * alpha).to(torch.float16).to(torch.float32).unsqueeze(-1)
            codes = ref_nearest_codes(ref_normalised(w, s), codebook)
            err = ((w - (codebook[codes] * s).to(dtype).to(torch.float32)) ** 2 * ib).sum(-1)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            chosen = torch.where(better, s.squeeze(-1), chosen)
        best[r0 : r0 + step] = chosen
    return best


def ref_search_scales(w: torch.Tensor, importance: torch.Tensor, bits: int, block: int, dtype: torch.dtype, seed: int,
                      rounds: int = 1, chunk_elements: int | None = 1 << 16) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Codebook and float16 scales: learn on the whole normalised matrix, clip search, learn again."""
    pad = (-w.shape[-1]) % block
    wb = torch.nn.functional.pad(w, (0, pad)).reshape(w.shape[0], -1, block).contiguous()
    ib = torch.nn.functional.pad(importance.reshape(1, -1).to(torch.float32), (0, pad)).reshape(1, -1, block)
    amax = wb.abs().amax(-1).clamp(max=65504.0)
    scales = amax.to(torch.float16).to(torch.float32)

    def codebook_for(scales: torch.Tensor) -> torch.Tensor:
        weights = ib * scales.unsqueeze(-1) ** 2 + 1e-20
        return ref_learn_codebook(ref_normalised(wb, scales.unsqueeze(-1)), bits, weights=weights, seed=seed, max_samples=1 << 16)

    codebook = codebook_for(scales)
    for _ in range(rounds):
        scales = ref_best_clip(wb, ib, amax, scales, codebook, dtype, chunk_elements)
        codebook = codebook_for(scales)
    return codebook, scales.to(torch.float16)
