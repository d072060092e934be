"""``uc compress --target-bpw``: one (width, block size) per tensor, least total damage under a bits-per-weight cap.

The choice is a multiple-choice knapsack: every tensor takes exactly one
option, each option has a damage (compress/sensitivity.py) and a cost in bits
on disk, and the total cost of all quantized tensors may not exceed
``target_bpw`` times their weights. It is solved by Lagrangian relaxation
(each tensor independently minimises damage + lambda * bits; lambda is bisected
to the smallest total cost within the cap) followed by greedy upgrades that
spend what is left of the budget where they remove the most damage per bit.
Why not dynamic programming as the encoder bench does: a model with thousands
of expert tensors would need a table of tensors x budget steps, and rounding
each cost up to whole steps wastes part of the budget; the relaxation is exact
up to the one tensor whose option straddles the cap, and runs in milliseconds.
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import UsageError

Option = tuple[int, int]  # (bits, block size)
_GLOB_MAGIC = re.compile(r"([*?\[])")


def exact_glob(key: str) -> str:
    """A glob that matches exactly ``key`` (its glob characters bracketed), for --bits-for style rules."""
    return _GLOB_MAGIC.sub(r"[\1]", key)


def allocate(damage: dict[str, dict[Option, float]], cost_bits: dict[str, dict[Option, int]], budget_bits: float) -> dict[str, Option]:
    """One option per tensor of ``damage`` with summed cost <= ``budget_bits`` and least summed damage.

    Raises UsageError when even the cheapest option of every tensor exceeds the budget.
    """
    names = sorted(damage)
    if not names:
        return {}
    options = [sorted(damage[n], key=lambda o: (cost_bits[n][o], damage[n][o])) for n in names]
    k = max(len(o) for o in options)
    d = np.full((len(names), k), np.inf)
    c = np.full((len(names), k), np.inf)
    for i, (n, opts) in enumerate(zip(names, options)):
        d[i, : len(opts)] = [damage[n][o] for o in opts]
        c[i, : len(opts)] = [cost_bits[n][o] for o in opts]
    rows = np.arange(len(names))
    cheapest = np.nanargmin(c, axis=1)
    if float(c[rows, cheapest].sum()) > budget_bits:
        raise UsageError(f"the cap allows {budget_bits:.0f} bits but the narrowest options take {c[rows, cheapest].sum():.0f}")

    def pick(lam: float) -> np.ndarray:
        return np.argmin(d + lam * c, axis=1)  # ties: the cheaper option (options sorted by cost)

    def total(choice: np.ndarray) -> float:
        return float(c[rows, choice].sum())

    scale = float(np.nanmax(d[np.isfinite(d)]) / max(1.0, float(np.nanmin(c)))) or 1.0
    lo, hi = -40.0, 40.0  # log10 of lambda / scale: low spends freely, high is the cheapest feasible choice
    if total(pick(0.0)) <= budget_bits:
        choice = pick(0.0)
    else:
        for _ in range(200):
            mid = (lo + hi) / 2
            if total(pick(scale * 10**mid)) <= budget_bits:
                hi = mid
            else:
                lo = mid
        choice = pick(scale * 10**hi)
        if total(choice) > budget_bits:
            choice = cheapest
    # greedy: spend what is left on the upgrades that remove the most damage per extra bit
    left = budget_bits - total(choice)
    while True:
        gain = d[rows, choice][:, None] - d
        extra = c - c[rows, choice][:, None]
        ok = (gain > 0) & (extra <= left) & np.isfinite(c)
        if not ok.any():
            break
        rate = np.where(ok, gain / np.maximum(extra, 1e-9), -np.inf)
        row, col = (int(v) for v in np.unravel_index(int(np.argmax(rate)), rate.shape))
        left -= float(extra[row, col])
        choice[row] = col
    return {n: options[i][int(choice[i])] for i, n in enumerate(names)}
