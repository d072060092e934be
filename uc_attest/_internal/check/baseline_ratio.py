"""Check 9: the quality loss against the original model, with our figure when we measured one."""

from __future__ import annotations

from ..policy.rules import Decision, judge_baseline_ratio
from .context import CheckContext, decided, failed, skipped
from .results import CheckResult

NAME = "baseline_ratio"


def check_baseline_ratio(ctx: CheckContext) -> CheckResult:
    rules = ctx.policy.perplexity
    limited = rules.max_ratio_to_baseline is not None
    predicate = ctx.predicate
    if predicate is None:
        return skipped(NAME, "Not checked: the signature did not verify.", limited)
    m = predicate.measurement
    if m.baseline is None:
        if limited:
            return failed(NAME, "The policy limits the ratio to the original model, but the attestation carries no measurement of the original model.")
        return skipped(NAME, "Not checked: no original-model measurement and no limit in the policy.", False)
    baseline = m.baseline.result.perplexity
    value = ctx.measured_perplexity if ctx.measured_perplexity is not None else m.pack.perplexity
    ctx.comparison["ratio_to_baseline"] = value / baseline
    which = "the figure measured here" if ctx.measured_perplexity is not None else "the vendor's signed figure"
    decision = judge_baseline_ratio(value, baseline, rules.max_ratio_to_baseline)
    return decided(NAME, Decision(decision.ok, f"With {which}: {decision.summary}", decision.details), limited)
