"""Check 7: the evaluation token file against its signed digest, before anything is measured on it."""

from __future__ import annotations

from ..errors import UcError
from .context import NOT_SIGNED, CheckContext, failed, passed, skipped
from .results import CheckResult

NAME = "eval_tokens"


def check_eval_tokens(ctx: CheckContext) -> CheckResult:
    """Tokens whose digest matched are left in ``ctx.token_ids`` (parsed from the bytes that were hashed)."""
    if ctx.predicate is None:
        return skipped(NAME, NOT_SIGNED, ctx.policy.perplexity.remeasure)
    if not ctx.policy.perplexity.remeasure:
        return skipped(NAME, "Not needed: the policy does not ask for a re-measurement.", False)
    return load_signed_tokens(ctx)


def load_signed_tokens(ctx: CheckContext) -> CheckResult:
    """The token file against its signed digest, whatever the policy says of re-measuring (attest probe needs the ids)."""
    if ctx.predicate is None:
        return skipped(NAME, NOT_SIGNED)
    from ..evaluate.tokens import load_token_file, token_file_limit

    path = ctx.tokens_path
    try:
        ids, _meta, sha = load_token_file(path, token_file_limit(ctx.predicate.measurement.dataset.token_count))
    except UcError as exc:
        return failed(NAME, f"The evaluation token file cannot be used: {exc}")
    if sha != ctx.attested_tokens:
        return failed(NAME, f"{path.name}: SHA-256 {sha[:16]}... is not the signed {str(ctx.attested_tokens)[:16]}...", {"sha256": sha})
    ctx.token_ids = ids
    return passed(NAME, f"{path.name}: SHA-256 equals the signed one ({ids.numel()} tokens).", {"sha256": sha})
