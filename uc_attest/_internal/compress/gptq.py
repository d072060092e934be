"""Hessian-aware quantization of one linear map onto a codebook times block scales.

For a linear map with weight W (rows = outputs, columns = inputs) and input
statistics H = sum x x^T over calibration tokens, the output error of a weight
change D is tr(D H D^T). The coder

1. learns the tensor's 2**bits-entry codebook by k-means over block-normalised
   weights, each weight counted with its importance H[j, j] * scale^2;
2. searches every block's scale over a grid of clipping factors of its
   absolute maximum, minimising the H-diagonal-weighted error, and refits the
   codebook for the chosen scales (two rounds);
3. quantizes column by column (in order of decreasing H[j, j] when act-order is
   on) and spreads each column's error over the not yet quantized columns
   through the inverse Hessian's Cholesky factor (GPTQ); the value used for a
   quantized column is the canonical reconstruction itself, bf16-rounded, so the
   error that is compensated is the error the customer's weights really have;
4. keeps, per matrix, the lowest Hessian error among: the sweep's codes, plain
   nearest-entry codes on the same grid, and (where a few input features are
   extreme) the same two for a grid fitted with capped importances;
5. optionally refines the grid under the full Hessian (``least_squares``): the
   codebook entries for the chosen codes, then alternately the block scales for
   the codes and a new sweep on the refitted grid, keeping each step only if it
   lowers the Hessian error (measured on the encoder's maps at 5 bits: Hessian
   error -5 % on average, -32 % on the best map; the scale rounds cost about
   15 % of the coding time, but the codebook step's normal equations took
   SmolLM2's whole compression from 714 to 1302 s, so ``uc compress`` runs it
   only with --refit-grid).

Block scales are fixed before step 3, so act-order never changes which scale a
weight uses.

With ``incoherence="auto"`` the group is also coded in the incoherence domain
(codec/incoherence.py): every map's rows are rotated by a seeded random-sign
block Hadamard transform, the coder runs unchanged on the rotated weights
under the rotated Hessian ``M H M^T`` (the same objective, since the
reconstruction is ``w = v M``), and each map keeps whichever coding has the
lower Hessian error of its canonical reconstruction, transform included; the
chosen transform is part of the map's codec parameters, so the manifest
records it.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from ..codec.codebook import learn_codebook, nearest_codes, nearest_entries, sample_indices
from ..codec.encoded import EncodedTensor
from ..codec.incoherence_torch import forward_transform, transform_hessian
from ..codec.params import CodecParams, HadamardTransform
from ..codec.reconstruct import TORCH_DTYPES, reconstruct_from_codes
from .least_squares import refit_block_scales, refit_codebook

try:
    from . import _sweep as _native_sweep  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - a source tree without the built extension: the torch loop
    _native_sweep = None

CLIP_GRID = tuple(1.0 - 0.03 * i for i in range(9))  # 1.00 .. 0.76
COLUMN_BLOCK = 128
MIN_HADAMARD = 16  # below this a rotation mixes too few weights to flatten a row's outliers
MAX_HADAMARD = 4096
SCALE_REFITS = 3  # scale refits, with a new sweep between two (measured: 6 rounds gain nothing more)


def _blocked(m: torch.Tensor, block: int) -> torch.Tensor:
    pad = (-m.shape[-1]) % block
    if pad:
        m = torch.nn.functional.pad(m, (0, pad))
    return m.reshape(*m.shape[:-1], -1, block)


def _dequant(codebook: torch.Tensor, codes: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Canonical value (float32 multiply, one rounding) widened back to float32."""
    entries = codebook.index_select(0, codes.reshape(-1)).reshape(codes.shape)  # codebook[codes], without advanced indexing's cost
    return (entries * scales).to(dtype).to(torch.float32)


def _normalised(w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return torch.where(s != 0, w / torch.where(s != 0, s, 1.0), 0.0)


def search_scales(
    w: torch.Tensor, importance: torch.Tensor, bits: int, block: int, dtype: torch.dtype, seed: int, rounds: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Codebook (float32, sorted) and float16 scales [rows, nblocks] for a [rows, cols] matrix.

    ``importance`` [cols] weighs each column's squared error (the Hessian diagonal).
    """
    wb = _blocked(w, block).contiguous()  # rows, nb, B
    ib = _blocked(importance.reshape(1, -1).to(device=w.device, dtype=torch.float32), block)  # 1, nb, B
    amax = wb.abs().amax(-1).clamp(max=65504.0)  # rows, nb
    scales = amax.to(torch.float16).to(torch.float32)
    sample = _CodebookSample.of(wb, ib, seed)
    with single_threaded():  # the learner's operations are small too (its results do not depend on the thread count)
        codebook = sample.codebook(scales, bits)
        for _ in range(rounds):
            scales = _best_clip(wb, ib, amax, scales, codebook, dtype)
            codebook = sample.codebook(scales, bits)
    return codebook, scales.to(torch.float16)


GRID_CHUNK_ELEMENTS = 1 << 16  # weights per row chunk of the clip search: its temporaries stay in the CPU's cache


def _best_clip(wb: torch.Tensor, ib: torch.Tensor, amax: torch.Tensor, scales: torch.Tensor, codebook: torch.Tensor,
               dtype: torch.dtype) -> torch.Tensor:  # fmt: skip
    """Per block, the clipped scale of CLIP_GRID with the lowest importance-weighted error (the first of equals).

    Rows are independent, so the grid runs over a chunk of rows at a time, every
    factor on a chunk before the next chunk: the same operations on the same
    values as over the whole matrix at once (identical results), but on
    temporaries that stay in cache instead of nine passes over matrices of
    tens of megabytes each (measured: the grid was most of a calibrated block's
    coding time at hidden 2048).
    """
    rows = wb.shape[0]
    # on a GPU the whole matrix at once: there small kernels cost their launch, and memory is fast
    step = max(1, GRID_CHUNK_ELEMENTS // max(1, wb[0].numel())) if wb.device.type == "cpu" else rows
    best = torch.empty_like(scales)
    # one lookup table for every factor and chunk; w / s is NaN only where w is (s is finite, and 0 handled apart)
    nearest = nearest_entries(codebook, wb, nan_free=not bool(torch.isnan(wb).any()))
    with single_threaded():  # small operations: see single_threaded (measured here: 4.0 against 7.6 CPU-s on two threads)
        for r0 in range(0, rows, step):
            _clip_rows(wb, ib, amax, scales, nearest, dtype, best, slice(r0, r0 + step))
    return best


def _clip_rows(wb: torch.Tensor, ib: torch.Tensor, amax: torch.Tensor, scales: torch.Tensor,
               nearest: Callable[[torch.Tensor], torch.Tensor], dtype: torch.dtype, best: torch.Tensor, rows: slice) -> None:  # fmt: skip
    """The grid search of :func:`_best_clip` on one chunk of rows, into ``best`` (``nearest``: a value's nearest codebook entry).

    Per factor: scale s = float16(amax x factor), the error of the canonical
    values round(entry(w / s) x s) weighted by importance, summed per block;
    per block, the first factor with the lowest error wins, and none (the
    block keeps ``scales``) where every error is NaN or infinite. The same
    float operations on the same values as the loop ``if err < best_err``
    over the factors, in fewer passes.
    """
    w, a = wb[rows], amax[rows]
    grid = (a * torch.tensor(CLIP_GRID, dtype=a.dtype, device=a.device).view(-1, 1, 1)).to(torch.float16).to(torch.float32)
    any_zero = (grid == 0).flatten(1).any(1).tolist()
    errs = []
    for s, zero in zip(grid.unsqueeze(-1), any_zero, strict=True):
        q = nearest(_normalised(w, s) if zero else w / s).mul_(s).to(dtype).to(torch.float32)  # _dequant of the nearest codes
        d = torch.sub(w, q, out=q) if q.dtype == w.dtype else w - q
        errs.append(d.mul_(d).mul_(ib).sum(-1))  # ((w - q) ** 2 * ib).sum(-1)
    low, first = torch.stack(errs).nan_to_num_(nan=math.inf, posinf=math.inf).min(0)  # min(0): the first index of the lowest
    best[rows] = torch.where(low < math.inf, grid.gather(0, first.unsqueeze(0)).squeeze(0), scales[rows])


CODEBOOK_SAMPLES = 1 << 16  # weights the codebook is learnt from (learn_codebook's seeded sample)


@dataclass(frozen=True)
class _CodebookSample:
    """The weights a matrix's codebook is learnt from, gathered once for every round of :func:`search_scales`.

    learn_codebook learns from a seeded sample of CODEBOOK_SAMPLES elements
    (codec.codebook.sample_indices) of the block-normalised weights, each
    counted with importance x scale^2. Only the sample is gathered,
    normalised and weighted here: the same arithmetic on the same elements as
    on the whole matrix first, at a fraction of the passes over it.
    """

    weights: torch.Tensor  # the sampled elements of wb
    importance: torch.Tensor  # their importance
    block_of: torch.Tensor  # their block's index in scales.reshape(-1)
    seed: int

    @classmethod
    def of(cls, wb: torch.Tensor, ib: torch.Tensor, seed: int) -> _CodebookSample:
        """The sample of a blocked matrix wb [rows, nb, B] with importance ib [1, nb, B]."""
        n, row, block = wb.numel(), wb[0].numel(), wb.shape[-1]
        idx = sample_indices(n, CODEBOOK_SAMPLES, seed) if n > CODEBOOK_SAMPLES else torch.arange(n)
        idx = idx.to(wb.device)
        flat_ib = ib.reshape(-1)
        return cls(wb.reshape(-1).index_select(0, idx), flat_ib.index_select(0, idx % row), idx // block, seed)

    def codebook(self, scales: torch.Tensor, bits: int) -> torch.Tensor:
        """The codebook for block scales [rows, nb]: k-means on the CPU whatever the device (its sampling generator is a CPU one), back on the device."""
        s = scales.reshape(-1).index_select(0, self.block_of)
        weights = self.importance * s**2 + 1e-20
        values = _normalised(self.weights, s)
        return learn_codebook(values.cpu(), bits, weights=weights.cpu(), seed=self.seed, max_samples=CODEBOOK_SAMPLES).to(scales.device)


def _inverse_cholesky(h: torch.Tensor) -> torch.Tensor:
    """Upper Cholesky factor U of H^-1 (U^T U = H^-1), adding damping until H is positive definite.

    With J the order-reversing permutation and J H J = L L^T, U = J L^-1 J:
    it is upper triangular with a positive diagonal, and U^T U = J L^-T L^-1 J
    = H^-1. One factorisation and one triangular inverse, where the textbook
    route (factorise H, invert, factorise the inverse) takes three steps:
    measured 2.2 against 4.2 ms at width 576 and 46 against 69 ms at 1536, and a
    slightly smaller error to the float64 factor (1.3e-7 against 1.7e-7 relative).
    """
    eye = torch.eye(h.shape[0], dtype=h.dtype, device=h.device)
    extra = 0.0
    mean_diag = float(h.diagonal().mean())
    for _ in range(8):
        try:
            lower = torch.linalg.cholesky((h + extra * mean_diag * eye).flip(0, 1))
            return torch.linalg.solve_triangular(lower, eye, upper=False).flip(0, 1).contiguous()
        except RuntimeError:  # torch.linalg.LinAlgError subclasses RuntimeError
            extra = 0.01 if extra == 0 else extra * 4
    raise RuntimeError("the Hessian stays singular after damping")


def hessian_error(w: torch.Tensor, q: torch.Tensor, h: torch.Tensor) -> float:
    """tr((w - q) h (w - q)^T), the product in h's own precision, the final sum in float64.

    Why not always float64: the coder compares its candidates (sweep against
    nearest-entry codes, raw against capped importances) under its float32
    damped Hessian thousands of times per model, and the float64 product with
    the conversion of h took 5 s of a SmolLM2 compression; float32 is 2-3.5x
    faster and agreed with it to 1e-8 relative on the shapes measured, far below
    any difference that decides between two candidates. A float64 h (the
    canonical comparisons of ``prepared_hessian``) keeps the float64 product.
    """
    d = (w - q).to(h.dtype)
    return float(((d @ h) * d).sum(dtype=torch.float64))


@dataclass(frozen=True)
class PreparedHessian:
    """A damped Hessian, its column order and the upper Cholesky factor of its inverse: computed once, shared by every sweep.

    Why once: a block's maps of different block sizes (and the grid refit's
    extra sweeps) read the same statistic; factorising it again for each cost
    as much as the sweep itself on wide maps. The factorisation runs in float32
    (the accumulation of H is float32 too, see hessian.gram), on H's device.
    """

    h: torch.Tensor  # damped, float32 [cols, cols]
    diag: torch.Tensor
    perm: torch.Tensor
    hinv: torch.Tensor | None  # None: no statistic (identity Hessian, nearest-entry coding)


def prepare_hessian(hessian: torch.Tensor | None, cols: int, damp: float, act_order: bool,
                    device: torch.device | str = "cpu") -> PreparedHessian:  # fmt: skip
    """Dead columns set to 1, damping ``damp`` x mean diagonal added, act-order permutation, inverse Cholesky factor."""
    h = torch.eye(cols, dtype=torch.float32, device=device) if hessian is None else hessian.to(device=device, dtype=torch.float32).clone()
    dead = h.diagonal() <= 0
    h[dead, dead] = 1.0
    h += damp * float(h.diagonal().mean()) * torch.eye(cols, dtype=torch.float32, device=h.device)
    diag = h.diagonal().clone()
    perm = torch.argsort(diag, descending=True, stable=True) if act_order else torch.arange(cols, device=h.device)
    hinv = _inverse_cholesky(h[perm][:, perm]) if hessian is not None else None
    return PreparedHessian(h, diag, perm, hinv)


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run the coder's many small tensor ops on one thread.

    The column loop issues thousands of operations on a few thousand elements;
    with the intra-op thread pool each pays a fork/join, and on a loaded machine
    an OpenMP barrier waits for a descheduled thread (measured: searchsorted
    10.8 ms on two threads, 0.39 ms on one). Large matmuls elsewhere (block
    forward passes, Hessians) keep every thread.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def gptq_quantize_group(
    weights: list[torch.Tensor],
    params: list[CodecParams],
    hessian: torch.Tensor | None,
    damp: float = 0.01,
    act_order: bool = True,
    seed: int = 0,
    refit: bool = False,
    incoherence: str = "off",
    prepared: PreparedHessian | None = None,
    prepared_rotated: PreparedHessian | None = None,
) -> list[tuple[EncodedTensor, torch.Tensor]]:
    """Encode 2-D weights that read the same input (one Hessian) with error feedback.

    GPTQ treats rows independently for a fixed H, so matrices sharing an input
    (q, k, v; gate, up) are stacked along their rows and swept once; each keeps
    its own codebook and scales, and may have its own width and block size (one
    sweep for a whole group, whatever its allocation). ``hessian`` is the input second moment over the
    block axis (None: identity, i.e. nearest-entry coding after the same scale
    and codebook search). ``incoherence``: "off"; "auto" to also code the
    group in the incoherence domain and keep, per weight, the coding with the
    lower Hessian error (see the module docstring); "on" to code it only there
    (where the width allows a transform and there is a Hessian). Returns (encoded, unpacked
    codes) per weight, on the CPU. ``prepared``: the plain Hessian already damped
    and factorised (:func:`prepare_hessian`), to share between calls (the
    incoherence domain's rotated Hessian is prepared here). The work runs on the
    weights' device; only the per-column loop is single-threaded.
    ``prepared_rotated``: the same for the incoherence domain's rotated Hessian
    (:func:`prepare_rotated`), when several calls share it.
    """
    if incoherence not in ("off", "auto", "on"):
        raise ValueError(f"incoherence must be 'off', 'auto' or 'on', not {incoherence!r}")
    cols, device = int(weights[0].shape[params[0].block_axis]), weights[0].device
    transform = hadamard_for_width(cols, seed)

    def plain_coding() -> list[tuple[EncodedTensor, torch.Tensor]]:
        plain_h = prepared if prepared is not None else prepare_hessian(hessian, cols, damp, act_order, device)
        return _gptq_quantize_group(weights, params, plain_h, seed, refit)

    if incoherence == "off" or hessian is None or transform is None:
        return plain_coding()
    rotated = _gptq_quantize_group(
        [forward_transform(w, transform, p.block_axis) for w, p in zip(weights, params, strict=True)],
        [p.model_copy(update={"transform": transform}) for p in params],
        prepared_rotated if prepared_rotated is not None else prepare_hessian(transform_hessian(hessian, transform), cols, damp, act_order, device),
        seed, refit,
    )  # fmt: skip
    if incoherence == "on":
        return rotated
    plain = plain_coding()
    h = prepared_hessian(hessian.cpu(), damp)
    return [min(pair, key=lambda coded: canonical_error(w.cpu(), p.block_axis, coded, h))
            for w, p, pair in zip(weights, params, zip(plain, rotated, strict=True), strict=True)]  # fmt: skip


def prepare_rotated(hessian: torch.Tensor, cols: int, damp: float, act_order: bool, seed: int,
                    device: torch.device | str = "cpu") -> PreparedHessian | None:  # fmt: skip
    """The incoherence domain's Hessian ``M H M^T``, prepared as :func:`prepare_hessian` does; None where no transform fits the width."""
    transform = hadamard_for_width(cols, seed)
    if transform is None:
        return None
    return prepare_hessian(transform_hessian(hessian, transform), cols, damp, act_order, device)


def hadamard_for_width(width: int, seed: int) -> HadamardTransform | None:
    """The transform the coder tries for an input width: the largest power of 4 dividing it (orthonormal, exact scaling).

    A power of 4 makes the reconstruction's normalisation 2**-(m/2) exactly
    1/sqrt(size); widths with no such factor of at least MIN_HADAMARD get none.
    """
    size = 1
    while size * 4 <= MAX_HADAMARD and width % (size * 4) == 0:
        size *= 4
    return HadamardTransform(size=size, seed=seed) if size >= MIN_HADAMARD else None


def prepared_hessian(hessian: torch.Tensor, damp: float) -> torch.Tensor:
    """The Hessian the coder's objective uses (float64): dead inputs given unit weight, plus relative damping."""
    h = hessian.to(torch.float64).clone()
    dead = h.diagonal() <= 0
    h[dead, dead] = 1.0
    h += damp * float(h.diagonal().mean()) * torch.eye(h.shape[0], dtype=torch.float64)
    return h


def canonical_error(weight: torch.Tensor, block_axis: int, coded: tuple[EncodedTensor, torch.Tensor], h: torch.Tensor) -> float:
    """Hessian error of the canonical reconstruction (transform and rounding included) against the original weight."""
    enc, codes = coded
    rebuilt = reconstruct_from_codes(codes, enc.codebook, enc.scales, enc.params).to(torch.float32)
    if block_axis == 0:
        return hessian_error(weight.to(torch.float32).t(), rebuilt.t(), h)
    return hessian_error(weight.to(torch.float32), rebuilt, h)


def _gptq_quantize_group(
    weights: list[torch.Tensor],
    params: list[CodecParams],
    prepared: PreparedHessian,
    seed: int,
    refit: bool,
) -> list[tuple[EncodedTensor, torch.Tensor]]:
    """One domain's coding of a group under its damped, factorised Hessian (see :func:`gptq_quantize_group`)."""
    # in the incoherence domain the one rounding comes after the inverse transform: the coder sees float32 products
    dtype = torch.float32 if params[0].transform is not None else TORCH_DTYPES[params[0].dtype]
    mats = []
    for weight, p in zip(weights, params, strict=True):
        if weight.ndim != 2:
            raise ValueError("gptq_quantize takes 2-D weights")
        mats.append((weight.t() if p.block_axis == 0 else weight).to(torch.float32).contiguous())
    cols = mats[0].shape[1]
    if any(m.shape[1] != cols for m in mats):
        raise ValueError("weights of one group must share their input dimension")
    h, diag, perm, hinv = prepared.h, prepared.diag, prepared.perm, prepared.hinv

    # Per matrix, the candidate (codebook, scales, codes) with the lowest Hessian error wins.
    best: list[tuple[float, torch.Tensor, torch.Tensor, torch.Tensor]] = [(float("inf"), torch.empty(0), torch.empty(0), torch.empty(0))] * len(mats)
    for importance in importance_candidates(diag):
        codebooks, scales16 = [], []
        for m, p in zip(mats, params, strict=True):
            cb, sc = search_scales(m, importance, p.bits, p.block_size, dtype, seed)
            codebooks.append(cb)
            scales16.append(sc)
        scales_full = [_full_scales(sc, p.block_size, cols) for sc, p in zip(scales16, params, strict=True)]
        if hinv is None:
            swept = [nearest_codes(_normalised(m, sf), cb) for m, sf, cb in zip(mats, scales_full, codebooks, strict=True)]
            losses = [0.0] * len(mats)  # without a Hessian there is one candidate, nearest-entry coding
        else:
            swept, losses = _sweep(mats, codebooks, scales_full, hinv, perm, dtype)
        for g, (m, cb, sf, codes, err) in enumerate(zip(mats, codebooks, scales_full, swept, losses, strict=True)):
            if hinv is not None:
                codes, err = _no_worse_than_nearest(m, codes, err, sf, cb, h, dtype)
            if err < best[g][0]:
                best[g] = (err, cb, scales16[g], codes)

    out = []
    for m, p, (_err, cb, sc, codes) in zip(mats, params, best, strict=True):
        if refit and hinv is not None:
            cb, sc, codes = _refine_grid(m, codes, sc, cb, h, (hinv, perm), p.block_size, dtype)
        codes8, cb, sc = codes.to(torch.uint8).cpu(), cb.cpu(), sc.cpu()
        if p.block_axis == 0:
            codes8, sc = codes8.t().contiguous(), sc.t().contiguous()
        out.append((EncodedTensor.from_codes(codes8, cb, sc.contiguous(), p), codes8))
    return out


def importance_candidates(diag: torch.Tensor) -> list[torch.Tensor]:
    """Column importances to fit codebook and scales with: the Hessian diagonal, and a capped one when it is extreme.

    A few input features can carry activations a million times larger than the
    rest (SmolLM2's down_proj: H[j, j] 19152 against a median of 0.018). Used raw
    as k-means weights, those one or two columns may own the whole shared codebook
    and every other weight is coded on a grid fitted to them (measured on layer
    11: Hessian error 900x that of plain rounding, perplexity ratio 8.9 for the
    model). On other tensors the raw weighting is the better one. So where the
    largest entry exceeds 100x the 99th percentile, both are tried and the
    Hessian error decides, per matrix.
    """
    d = diag.to(torch.float64)
    cap = float(torch.quantile(d, 0.99)) if d.numel() > 1 else float(d.max())
    if float(d.max()) <= 100.0 * cap:
        return [diag]
    return [diag, d.clamp(max=cap).to(diag.dtype)]


def _sweep(
    mats: list[torch.Tensor], codebooks: list[torch.Tensor], scales_full: list[torch.Tensor], hinv: torch.Tensor,
    perm: torch.Tensor, dtype: torch.dtype,
) -> tuple[list[torch.Tensor], list[float]]:
    """GPTQ's column sweep over the stacked matrices: each matrix's codes (int64, original column order) and Hessian error.

    The error is the sweep's own accumulated loss: with H^-1 = U^T U, the
    sweep's scaled errors E satisfy W - Q = E U, so tr((W-Q) H (W-Q)^T) =
    ||E||^2 exactly, without a product with H.
    """
    w = torch.cat(mats)
    rows, cols = w.shape
    device = w.device
    row_group = torch.cat([torch.full((m.shape[0],), g, dtype=torch.int64, device=device) for g, m in enumerate(mats)])
    k = max(cb.numel() for cb in codebooks)
    table = torch.stack([torch.nn.functional.pad(cb, (0, k - cb.numel()), value=float("inf")) for cb in codebooks])
    mids = ((table[:, 1:] + table[:, :-1]) * 0.5)[row_group].contiguous()  # rows, k-1 (inf beyond a smaller codebook)
    values = table[row_group]  # rows, k
    inv_perm = torch.argsort(perm)
    # column-major: the loop reads and writes one column at a time, so each is a contiguous row here
    wt = w.t()[perm].contiguous()
    st = torch.cat(scales_full).t()[perm].contiguous()
    inv_st = torch.where(st != 0, 1.0 / torch.where(st != 0, st, 1.0), 0.0)
    codes_t = torch.zeros(cols, rows, dtype=torch.int64, device=device)
    loss = torch.zeros(rows, dtype=torch.float64, device=device)
    # flat index of row r's codebook entry c is offsets[r] + c: one take() instead of a gather on a [rows, 1] view
    offsets = torch.arange(rows, device=device) * values.shape[1]
    _sweep_columns(wt, st, inv_st, mids, values.reshape(-1), offsets, hinv, codes_t, loss, dtype)
    codes_all = codes_t[inv_perm].t()
    sizes = [m.shape[0] for m in mats]
    return list(codes_all.split(sizes)), [float(part.sum()) for part in loss.split(sizes)]


def _sweep_columns(wt: torch.Tensor, st: torch.Tensor, inv_st: torch.Tensor, mids: torch.Tensor, values: torch.Tensor,
                   offsets: torch.Tensor, hinv: torch.Tensor, codes_t: torch.Tensor, loss: torch.Tensor,
                   dtype: torch.dtype) -> None:  # fmt: skip
    """GPTQ's lazy-batch loop, in place on the column-major ``wt``, ``codes_t`` and ``loss``.

    Only the loop over the columns of one COLUMN_BLOCK runs on one thread (it
    issues a dozen small operations per column, for which a thread pool only
    adds barrier waits); the update of the remaining columns after each block,
    one matrix product, uses every thread (issue 28: "only the per-column loop
    stays single-threaded").
    """
    cols, rows = wt.shape
    rounds = dtype != torch.float32
    kernel = native_sweep_applies(wt, hinv, dtype)
    for i1 in range(0, cols, COLUMN_BLOCK):
        i2 = min(cols, i1 + COLUMN_BLOCK)
        w1 = wt[i1:i2].clone()
        err1 = torch.empty_like(w1)
        h1 = hinv[i1:i2, i1:i2]
        if kernel:
            assert _native_sweep is not None
            _native_sweep.sweep_block(w1.numpy(), inv_st[i1:i2].numpy(), st[i1:i2].numpy(), mids.numpy(), values.numpy(),
                                      h1.contiguous().numpy(), codes_t[i1:i2].numpy(), err1.numpy(), rows, i2 - i1,
                                      mids.shape[1] + 1, rounds)  # fmt: skip
        else:
            _sweep_block_torch(w1, err1, inv_st[i1:i2], st[i1:i2], mids, values, offsets, h1, codes_t[i1:i2], dtype)
        loss += (err1.to(torch.float64) ** 2).sum(0)
        wt[i2:] -= hinv[i1:i2, i2:].t() @ err1


def native_sweep_applies(wt: torch.Tensor, hinv: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether the compiled per-column loop (_sweep.c) runs this sweep: CPU float32 tensors, bf16 or no rounding.

    ``UC_ATTEST_NATIVE=0`` switches it off, as it does the reconstruction kernel.
    Both loops give the same codes (tests/compress/test_native_sweep.py).
    """
    return (
        _native_sweep is not None
        and os.environ.get("UC_ATTEST_NATIVE", "1") != "0"
        and wt.device.type == "cpu"
        and wt.dtype == hinv.dtype == torch.float32
        and dtype in (torch.float32, torch.bfloat16)
    )


def _sweep_block_torch(w1: torch.Tensor, err1: torch.Tensor, inv_st: torch.Tensor, st: torch.Tensor, mids: torch.Tensor,
                       values: torch.Tensor, offsets: torch.Tensor, h1: torch.Tensor, codes_t: torch.Tensor,
                       dtype: torch.dtype) -> None:  # fmt: skip
    """One block's column loop in torch operations (any device), on one thread; in place on w1, err1 and codes_t."""
    pivots = h1.diagonal().tolist()
    rounds = dtype != torch.float32
    with single_threaded():
        for i in range(w1.shape[0]):
            col = w1[i]
            c = torch.searchsorted(mids, (col * inv_st[i]).unsqueeze(1)).squeeze(1)  # mids below the value
            q = values.take(c + offsets) * st[i]
            if rounds:
                q = q.to(dtype).to(torch.float32)
            codes_t[i] = c
            e = (col - q) / pivots[i]
            w1[i:].sub_(torch.outer(h1[i, i:], e))  # not addr_: it fuses a multiply-add in its vector lanes only
            err1[i] = e


def _no_worse_than_nearest(
    w: torch.Tensor, codes: torch.Tensor, gptq_err: float, scales_full: torch.Tensor, codebook: torch.Tensor, h: torch.Tensor,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, float]:
    """GPTQ's codes, unless nearest-entry coding on the same codebook and scales has a lower Hessian error.

    Returns the codes kept and their Hessian error.

    Error feedback is optimal only while the compensated weights stay inside the
    grid's range; where clipping breaks that, plain rounding can be better. The
    comparison costs one product with H per tensor and makes the calibrated coder
    never worse, on its own objective, than rounding.
    """
    nearest = nearest_codes(_normalised(w, scales_full), codebook)
    nearest_err = hessian_error(w, _dequant(codebook, nearest, scales_full, dtype), h)
    return (nearest, nearest_err) if nearest_err < gptq_err else (codes, gptq_err)


def _refit(
    w: torch.Tensor, codes: torch.Tensor, scales_full: torch.Tensor, codebook: torch.Tensor, h: torch.Tensor,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Codebook refit under the full Hessian, kept only if it lowers the Hessian error."""
    before = hessian_error(w, _dequant(codebook, codes, scales_full, dtype), h)
    fitted = refit_codebook(w, codes, scales_full, h, codebook.numel())
    if fitted is None:
        return codebook, codes
    values, used = fitted
    candidate = codebook.clone()
    candidate[used] = values
    order = torch.argsort(candidate, stable=True)
    if not torch.all(candidate[order][1:] > candidate[order][:-1]):
        return codebook, codes
    new_codes = torch.argsort(order)[codes]
    new_cb = candidate[order].contiguous()
    after = hessian_error(w, _dequant(new_cb, new_codes, scales_full, dtype), h)
    return (new_cb, new_codes) if after < before else (codebook, codes)


def _full_scales(scales16: torch.Tensor, block: int, cols: int) -> torch.Tensor:
    return torch.repeat_interleave(scales16.to(torch.float32), block, dim=1)[:, :cols]


def _refine_grid(
    w: torch.Tensor, codes: torch.Tensor, scales16: torch.Tensor, codebook: torch.Tensor, h: torch.Tensor,
    sweep_with: tuple[torch.Tensor, torch.Tensor], block: int, dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Codebook refit, then SCALE_REFITS least-squares scale refits with a GPTQ sweep on the new grid between two.

    ``sweep_with`` is the sweep's (inverse Cholesky factor, column order). Every
    step is kept only if it lowers the Hessian error of the canonical
    reconstruction, so the result is never worse than the codes it started from.
    Returns (codebook, float16 scales, codes).
    """
    cols = w.shape[1]
    scales_full = _full_scales(scales16, block, cols)
    codebook, codes = _refit(w, codes, scales_full, codebook, h, dtype)
    err = hessian_error(w, _dequant(codebook, codes, scales_full, dtype), h)
    for round_ in range(SCALE_REFITS):
        if round_:
            swept_codes, swept_losses = _sweep([w], [codebook], [scales_full], *sweep_with, dtype)
            swept, swept_err = swept_codes[0], swept_losses[0]
            if swept_err < err:
                codes, err = swept, swept_err
        fitted = refit_block_scales(w, codebook[codes], scales16, h, block).clamp(-65504.0, 65504.0).to(torch.float16)
        fitted_full = _full_scales(fitted, block, cols)
        fitted_err = hessian_error(w, _dequant(codebook, codes, fitted_full, dtype), h)
        if fitted_err < err:
            scales16, scales_full, err = fitted, fitted_full, fitted_err
    return codebook, scales16, codes


def gptq_quantize(
    weight: torch.Tensor,
    params: CodecParams,
    hessian: torch.Tensor | None,
    damp: float = 0.01,
    act_order: bool = True,
    seed: int = 0,
    refit: bool = False,
    incoherence: str = "off",
) -> tuple[EncodedTensor, torch.Tensor]:
    """One weight: see :func:`gptq_quantize_group`."""
    return gptq_quantize_group([weight], [params], hessian, damp, act_order, seed, refit, incoherence)[0]
