"""Least-squares refits of a coded matrix's grid under the full Hessian, for fixed codes.

GPTQ chooses codes for a grid (codebook times block scales) fitted before the
sweep, from the Hessian diagonal only. Once the codes are known, the grid that
minimises the real objective tr(D H D^T), D = W - Q, is a linear least-squares
problem in either half of it:

* the codebook, shared by the whole matrix (:func:`refit_codebook`);
* the block scales, independent per row, since rows do not interact in
  tr(D H D^T) (:func:`refit_block_scales`).

Both return float values that the caller rounds to the stored dtypes and keeps
only if the canonical reconstruction's Hessian error really drops: the solution
ignores that rounding, and the caller's guard makes a refit never worse.
"""

from __future__ import annotations

import torch


def refit_codebook(
    w: torch.Tensor, codes: torch.Tensor, scales_full: torch.Tensor, h: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Least-squares codebook for fixed codes and scales under tr(D H D^T); None if degenerate.

    Q = sum_k c_k M_k with M_k = scale * [code == k]; the normal equations are
    A c = b with A_kl = sum_r m_k^r H m_l^r and b_k = sum_r m_k^r H w^r.
    Returns the fitted entries and the mask of entries that some weight uses.
    """
    rows, cols = w.shape
    h = h.to(torch.float64)
    dev = w.device
    a = torch.zeros(k, k, dtype=torch.float64, device=dev)
    b = torch.zeros(k, dtype=torch.float64, device=dev)
    hw = w.to(torch.float64) @ h  # rows, cols
    chunk = max(1, (1 << 23) // max(1, cols * cols))
    for r0 in range(0, rows, chunk):
        r1 = min(rows, r0 + chunk)
        s = scales_full[r0:r1].to(torch.float64)  # r, cols
        c = codes[r0:r1].long()  # r, cols
        # (M_r^T H)[k, d] = sum over columns c with code k of s[c] * H[c, d]
        scaled = s.unsqueeze(-1) * h.unsqueeze(0)  # r, cols, cols
        mh = torch.zeros(r1 - r0, k, cols, dtype=torch.float64, device=dev)
        mh.scatter_add_(1, c.unsqueeze(-1).expand(-1, -1, cols), scaled)
        # A += (M_r^T H) M_r: gather the same way along d
        part = torch.zeros(r1 - r0, k, k, dtype=torch.float64, device=dev)
        part.scatter_add_(2, c.unsqueeze(1).expand(-1, k, -1), mh * s.unsqueeze(1))
        a += part.sum(0)
        b.index_add_(0, c.reshape(-1), (s * hw[r0:r1]).reshape(-1))
    used = a.diagonal() > 0
    if int(used.sum()) < 2:
        return None
    a_u = a[used][:, used]
    a_u = a_u + 1e-9 * a_u.diagonal().mean() * torch.eye(a_u.shape[0], dtype=torch.float64, device=dev)
    try:
        sol = torch.linalg.solve(a_u, b[used])
    except RuntimeError:
        return None
    return sol.to(torch.float32), used


def refit_block_scales(
    w: torch.Tensor, values: torch.Tensor, scales: torch.Tensor, h: torch.Tensor, block: int
) -> torch.Tensor:
    """Least-squares block scales [rows, nblocks] (float64) for fixed codebook values under tr(D H D^T).

    ``values`` [rows, cols] holds codebook[code] for every weight, ``scales``
    the current scales. Row r's reconstruction is V_r s_r, where V_r [cols,
    nblocks] places each weight's value in its block's column, so its best
    scales solve (V_r^T H V_r) s_r = V_r^T H w_r: one nblocks x nblocks system
    per row. Blocks couple through H's off-diagonal blocks, which is why this
    beats fitting each block alone. A ridge towards the current scales (1e-6 of
    the mean diagonal) keeps a block with all-zero codes at its scale instead of
    making the system singular.
    """
    rows, cols = w.shape
    h = h.to(torch.float64)
    pad = (-cols) % block
    v = torch.nn.functional.pad(values.to(torch.float64), (0, pad))
    hw = torch.nn.functional.pad(w.to(torch.float64) @ h, (0, pad))
    hp = torch.nn.functional.pad(h, (0, pad, 0, pad))
    nb = (cols + pad) // block
    h_blocks = hp.reshape(nb, block, nb, block)
    v_blocks = v.reshape(rows, nb, block)
    rhs = (v_blocks * hw.reshape(rows, nb, block)).sum(-1)  # rows, nb: V_r^T H w_r
    current = scales.to(torch.float64)
    out = torch.empty(rows, nb, dtype=torch.float64, device=w.device)
    eye = torch.eye(nb, dtype=torch.float64, device=w.device)
    chunk = max(1, (1 << 24) // (nb * (cols + pad)))  # rows per step: their [r, nb, nb, block] product stays ~128 MiB
    for r0 in range(0, rows, chunk):
        r1 = min(rows, r0 + chunk)
        vh = torch.einsum("rbi,bicj->rbcj", v_blocks[r0:r1], h_blocks)
        gram = torch.einsum("rbcj,rcj->rbc", vh, v_blocks[r0:r1])  # r, nb, nb: V_r^T H V_r
        ridge = 1e-6 * gram.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(1e-30)
        system = gram + ridge[:, None, None] * eye
        out[r0:r1] = torch.linalg.solve(system, (rhs[r0:r1] + ridge[:, None] * current[r0:r1]).unsqueeze(-1)).squeeze(-1)
    return out
