"""The probe's judgement: served NLLs against the signed ones, under the policy's ``[probe]`` tolerances.

A window's served NLL is recomputed here from the endpoint's per-token
log-probabilities (``-fsum``, float64), exactly the quantity uc-ppl-v1 signs
(tokens 1..n-1 of the window given their prefix). The rules, all of which
must hold:

* at least ``min_windows`` windows were scored;
* the share of windows whose mean shift per predicted token exceeds
  ``window_tolerance`` (nats) is at most ``max_share_outside``;
* over all scored windows, the perplexity differs from the signed one by at
  most ``total_tolerance`` (relative).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..check.probe_record import ProbeWindow
from ..policy.model import ProbePolicy


def served_nll(logprobs: list[float | None]) -> float | None:
    """-sum of log P(token i | prefix) over positions 1..n-1 (float64); None when any position is missing."""
    scored = logprobs[1:]
    if any(v is None for v in scored):
        return None
    return -math.fsum(v for v in scored if v is not None)


@dataclass(frozen=True)
class Judgement:
    ok: bool
    summary: str
    rows: list[ProbeWindow]
    outside: list[int]
    signed_perplexity: float | None
    served_perplexity: float | None
    relative_difference: float | None


def judge(pairs: list[tuple[int, float, float]], tokens_per_window: int, policy: ProbePolicy) -> Judgement:
    """Judge ``(window index, signed NLL, served NLL)`` triples; every failed rule is named in the summary."""
    rows = []
    for index, signed, served in pairs:
        shift = (served - signed) / tokens_per_window
        rows.append(ProbeWindow(index=index, signed_nll=signed, served_nll=served, difference_per_token=shift,
                                within_tolerance=abs(shift) <= policy.window_tolerance))  # fmt: skip
    outside = [r.index for r in rows if not r.within_tolerance]
    if not rows:
        return Judgement(False, "No window could be scored.", rows, outside, None, None, None)
    tokens = tokens_per_window * len(rows)
    signed_ppl = math.exp(math.fsum(r.signed_nll for r in rows) / tokens)
    served_ppl = math.exp(math.fsum(r.served_nll for r in rows) / tokens)
    rel = served_ppl / signed_ppl - 1.0
    share = len(outside) / len(rows)
    problems = []
    if len(rows) < policy.min_windows:
        problems.append(f"only {len(rows)} windows scored, the policy asks for at least {policy.min_windows}")
    if share > policy.max_share_outside:
        named = ", ".join(str(i) for i in outside[:10]) + (" ..." if len(outside) > 10 else "")
        problems.append(f"{len(outside)} of {len(rows)} windows ({share:.0%}) shift by more than {policy.window_tolerance:g} nats per token "
                        f"(at most {policy.max_share_outside:.0%} may): windows {named}")  # fmt: skip
    if abs(rel) > policy.total_tolerance:
        problems.append(f"perplexity {served_ppl:.6g} served against {signed_ppl:.6g} signed ({rel:+.3%}; at most {policy.total_tolerance:.2%} allowed)")
    worst = max(rows, key=lambda r: abs(r.difference_per_token))
    facts = (f"{len(rows)} windows scored; perplexity {served_ppl:.6g} served, {signed_ppl:.6g} signed ({rel:+.3%}); "
             f"largest shift {worst.difference_per_token:+.4g} nats per token (window {worst.index}); {len(outside)} outside the per-window tolerance")  # fmt: skip
    if problems:
        return Judgement(False, "; ".join(problems) + ". " + facts + ".", rows, outside, signed_ppl, served_ppl, rel)
    return Judgement(True, facts + ", within the policy.", rows, outside, signed_ppl, served_ppl, rel)


__all__ = ["Judgement", "judge", "served_nll"]
