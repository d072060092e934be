"""Check 8: perplexity re-measured here, on the verified weights, against the signed figure.

Measured only on the pack that was verified and is the one signed, and on the
signed tokens: minutes of compute are pointless otherwise. The weights used
are exactly the verified ones: every tensor the evaluation rebuilds is
compared with the verification pass's digest before use, so a pack swapped
after verification fails here instead of being measured.
"""

from __future__ import annotations

from ..errors import UcError
from ..policy.rules import judge_perplexity
from .context import NOT_SIGNED, CheckContext, decided, failed, skipped
from .conversions import environment_record, measured_here, signed_measurement
from .results import CheckResult

NAME = "perplexity_match"


def check_perplexity(ctx: CheckContext) -> CheckResult:
    rules = ctx.policy.perplexity
    required = rules.remeasure and rules.required
    predicate = ctx.predicate
    if predicate is None:
        return skipped(NAME, "Not measured: the signature did not verify.", required)
    if not rules.remeasure:
        return skipped(NAME, "Not measured: the policy does not ask for a re-measurement.", False)
    if ctx.token_ids is None or not ctx.pack_is_the_signed_one():
        why = "the pack is not the one signed" if not ctx.pack_is_the_signed_one() else "the evaluation tokens are not the signed ones"
        return skipped(NAME, f"Not measured: {why}.", rules.required)
    from ..evaluate.environment import capture_environment
    from ..evaluate.measure import measure_pack

    m = predicate.measurement
    assert ctx.verified is not None
    try:
        # pinned to the verified pack and the signed manifest: a pack swapped after verification fails here
        settings = ctx.inputs.evaluation.with_windows(m.seq_len, m.max_windows)  # the signed windows, whatever else was asked
        outcome = measure_pack(ctx.verified, ctx.token_ids, settings, expected_manifest_sha256=predicate.pack.manifest_sha256)
    except UcError as exc:
        # an integrity failure, not a quality judgement: required whatever the policy says of perplexity
        return failed(NAME, f"Not measured: the pack changed after it was verified ({exc}).")
    result = outcome.result
    ctx.customer_env = environment_record(capture_environment(None, device=outcome.device, dtype=result.compute_dtype))
    attested, measured = signed_measurement(m), measured_here(result)
    ctx.measured_perplexity = measured.perplexity
    ctx.comparison.update(
        measured=measured,
        abs_difference=abs(measured.perplexity - attested.perplexity),
        rel_difference=abs(measured.perplexity - attested.perplexity) / attested.perplexity,
        bit_identical=measured.perplexity_hex == attested.perplexity_hex,
        window_nll_diff=[a - b for a, b in zip(measured.window_nll, attested.window_nll, strict=True)] if measured.windows == attested.windows else [],
    )
    return decided(NAME, judge_perplexity(attested.perplexity, measured.perplexity, rules), rules.required)


__all__ = ["NOT_SIGNED", "check_perplexity"]
