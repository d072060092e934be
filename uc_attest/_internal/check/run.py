"""``attest check``: the customer's checks, in order, over one verification pass of the pack.

Order and why:

1. the signature, first: nothing in the attestation means anything before it
   verifies; then what the policy says of the signer and of the attestation's age;
2. one verification pass over the pack (each file read and hashed once, each
   tensor rebuilt once from the same bytes): a :class:`VerifiedPack` that every
   later check uses; then the files against the signed subjects, the pack's
   structure, and every rebuilt tensor against its signed digest;
3. the evaluation tokens against their signed digest, and only then the
   perplexity re-measurement (minutes; pointless on a pack or token file that
   is not the one signed) and its ratio to the original model.

A failed check never stops the run when later checks can still add evidence:
the report must say everything that is wrong, not only the first thing
(``--fail-fast`` is the exception: it stops before the costly stages).
Inputs that cannot be used at all (no bundle file, the wrong kind of trust
material) raise exit-2 errors instead: there is nothing to report on.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..attest.bundle import MAX_BUNDLE_BYTES
from ..version import __version__
from ..errors import UcError, UsageError, VerificationError
from ..pack.deployed import require_model_directory
from ..pack.manifest import MANIFEST_NAME
from ..policy.levels import recorded_policy_name
from ..safe_io import NotRegularFileError, read_input_file, sha256_regular_file
from .attestation_age import check_attestation_age
from .baseline_ratio import check_baseline_ratio
from .context import CheckContext, CheckInputs
from .deploy_checks import check_deployed, check_oms_signature
from .eval_tokens import check_eval_tokens
from .pack_files import check_pack_files
from .pack_structure import check_pack_structure
from .perplexity_match import check_perplexity
from .conversions import environment_record, signed_measurement
from .results import (
    ArtifactIdentity,
    CheckResult,
    Digests,
    Environments,
    PerplexityComparison,
    PolicyRecord,
    Reconstruction,
    Results,
    SignerIdentity,
    ToolInfo,
    derive_verdict,
    summarize_blocks,
    verdict_reasons,
)
from .signature import check_signature
from .signer_trust import check_signer_trust
from .weights import check_weights

Check = Callable[[CheckContext], CheckResult | None]


@dataclass
class CheckOutcome:
    """The results, plus the bundle bytes they were made for (the report embeds them)."""

    results: Results
    bundle_bytes: bytes
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage (not part of the results)


def read_pack(ctx: CheckContext) -> None:
    """The verification pass: one read of every file; its findings go to ``ctx.verified`` (or ``ctx.pack_error``)."""
    from ..pack.verify import verify_pack

    if ctx.inputs.fail_fast and ctx.failed():
        ctx.pack_skipped = True
        return
    try:
        # one rule with pack_files: files nobody signed are tolerated (never read) exactly when the policy says so
        ctx.verified = verify_pack(ctx.inputs.pack, progress=ctx.inputs.progress, architecture=True,
                                   tolerate_unlisted=ctx.policy.weights.allow_unattested_files)
    except UcError as exc:
        ctx.pack_error = str(exc)


def stop_if_failed(ctx: CheckContext) -> None:
    """--fail-fast: once a required check failed, the pack's remaining checks are not judged."""
    if ctx.inputs.fail_fast and ctx.failed():
        ctx.pack_skipped = True


STAGES: list[tuple[str, list[Check]]] = [
    ("signature", [check_signature]),
    ("signer policy", [check_signer_trust, check_attestation_age]),
    ("pack verification (one pass)", [read_pack]),
    ("file hashes", [check_pack_files, stop_if_failed]),
    ("structure and weights", [check_pack_structure, check_weights]),
    ("tokens and perplexity", [check_eval_tokens, check_perplexity, check_baseline_ratio]),
    ("deployment", [check_deployed, check_oms_signature]),
]
"""The check, stage by stage (timed per stage); a step that returns a result adds it to the results (one that returns None only
prepares the context, like the verification pass)."""


def _context(inputs: CheckInputs) -> CheckContext:
    from ..attest.paths import default_bundle_path, tokens_path_for_bundle

    pack_root = Path(inputs.pack)
    if not pack_root.is_dir():
        raise UsageError(f"no such pack directory: {pack_root}")
    manifest = pack_root / MANIFEST_NAME
    if not manifest.exists() and not manifest.is_symlink():
        raise UsageError(f"{pack_root} is not a pack: no {MANIFEST_NAME}")
    if inputs.deployed is not None:  # a missing or unreadable served directory is a usage error, before any work
        require_model_directory(Path(inputs.deployed))
    bundle_path = Path(inputs.bundle) if inputs.bundle else default_bundle_path(pack_root)
    bundle_bytes = read_input_file(bundle_path, "bundle", MAX_BUNDLE_BYTES)
    tokens_path = Path(inputs.tokens) if inputs.tokens else tokens_path_for_bundle(bundle_path)
    now = (inputs.now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
    return CheckContext(inputs=inputs, now=now, bundle_bytes=bundle_bytes, tokens_path=tokens_path, bundle_path=bundle_path)


def run_check(inputs: CheckInputs) -> CheckOutcome:
    """Run every check on ``inputs`` and return the results (verdict included)."""
    ctx = _context(inputs)
    expected_signer = inputs.trust.expected_signer()  # an unusable key file is an input error, before any work
    timings: dict[str, float] = {}
    for stage, steps in STAGES:
        started = time.perf_counter()
        for step in steps:
            outcome = step(ctx)
            if isinstance(outcome, CheckResult):
                ctx.checks.append(outcome)
        timings[stage] = round(time.perf_counter() - started, 3)
    started = time.perf_counter()
    results = _results(ctx, SignerIdentity(**expected_signer.model_dump(), verified=False))
    timings["results"] = round(time.perf_counter() - started, 3)
    return CheckOutcome(results=results, bundle_bytes=ctx.bundle_bytes, timings=timings)


def _manifest_sha256(ctx: CheckContext) -> str:
    if ctx.verified is not None:
        return ctx.verified.report.manifest_sha256
    try:
        return sha256_regular_file(Path(ctx.inputs.pack) / MANIFEST_NAME, follow_symlinks=False)[1]
    except NotRegularFileError as exc:  # a FIFO or device in its place: a tampered pack, refused unread
        raise VerificationError(f"{MANIFEST_NAME}: {exc.strerror or exc}") from None
    except OSError:
        raise UsageError(f"{ctx.inputs.pack} is not a pack: no {MANIFEST_NAME}") from None


def _comparison(ctx: CheckContext) -> PerplexityComparison:
    rules = ctx.policy.perplexity
    limits: dict[str, Any] = {"relative_tolerance": rules.relative_tolerance, "absolute_tolerance": rules.absolute_tolerance,
              "max_ratio_to_baseline": rules.max_ratio_to_baseline}  # fmt: skip
    predicate = ctx.predicate
    if predicate is None:
        return PerplexityComparison(**limits)
    m = predicate.measurement
    return PerplexityComparison(
        attested=signed_measurement(m),
        baseline_perplexity=m.baseline.result.perplexity if m.baseline else None,
        baseline_perplexity_hex=m.baseline.result.perplexity_hex if m.baseline else None,
        dataset=f"{m.dataset.text_source}, {m.dataset.token_count} tokens (token file sha256 {m.dataset.sha256})",
        **limits,
        **ctx.comparison,
    )


def _results(ctx: CheckContext, expected_signer: SignerIdentity) -> Results:
    from ..evaluate.environment import capture_environment

    predicate = ctx.predicate
    verified = ctx.verified
    manifest_sha = _manifest_sha256(ctx)
    signer = SignerIdentity(**ctx.attestation.signer.model_dump()) if ctx.attestation is not None else expected_signer
    model = verified.pack.manifest.model if verified is not None else None
    customer = ctx.customer_env or environment_record(capture_environment(None, device=ctx.inputs.evaluation.device))
    loaded = ctx.inputs.policy
    return Results(
        tool=ToolInfo(version=__version__),
        verdict=derive_verdict(ctx.checks),
        verdict_reasons=verdict_reasons(ctx.checks),
        artifact=ArtifactIdentity(
            model_type=model.model_type if model is not None else (predicate.pack.model_type if predicate else "unknown"),
            model_name=model.source.name if model is not None else "unknown",
            model_source_note=model.source.note if model is not None and ctx.pack_is_the_signed_one() else "",
            pack_manifest_sha256=manifest_sha,
            signer=signer,
            signed_at=predicate.signed_at if predicate else None,
            expires_at=predicate.expires_at if predicate else None,
            checked_at=ctx.now,
        ),
        policy=PolicyRecord(name=recorded_policy_name(ctx.policy.name, loaded.sha256), source=loaded.source, sha256=loaded.sha256, text=loaded.text),
        digests=Digests(
            bundle_sha256=hashlib.sha256(ctx.bundle_bytes).hexdigest(),
            pack_manifest_sha256=manifest_sha,
            policy_sha256=loaded.sha256,
            statement_sha256=hashlib.sha256(ctx.attestation.payload).hexdigest() if ctx.attestation is not None else None,
        ),
        checks=ctx.checks,
        perplexity=_comparison(ctx),
        reconstruction=Reconstruction(tensors=ctx.tensors, blocks=summarize_blocks(ctx.tensors)),
        files=ctx.files,
        environments=Environments(vendor=environment_record(predicate.environment) if predicate else None, customer=customer),
    )


build_context = _context  # attest probe runs the same steps up to the tokens (uc_attest._internal.probe.run)
build_results = _results

__all__ = ["STAGES", "build_context", "build_results", "CheckInputs", "CheckOutcome", "run_check"]
