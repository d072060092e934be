"""The customer's check: one named check per question, each with evidence, then a verdict.

Order and why:

1. the signature, first: nothing in the attestation means anything before it
   verifies (expiry is left to the policy, which decides how old is too old);
2. what the policy says about the signer and the attestation's age;
3. the pack's files against the signed subjects (every byte), then the pack's
   own structure and every tensor's rebuilt digest against the signed ones;
4. the evaluation tokens against their signed digest, and only then the
   perplexity re-measurement (minutes of CPU; pointless on a pack or token file
   that is not the one signed) and its ratio to the original model.

A failed check never stops the run when later checks can still add evidence:
the report must say everything that is wrong, not only the first thing.
Inputs that cannot be used at all (no bundle file, the wrong kind of trust
material) raise exit-2 errors instead: there is nothing to report on.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from .. import __version__
from ..errors import UcError, UnreadableInputError, UsageError, VerificationError
from ..policy.loader import LoadedPolicy
from ..safe_io import read_input_file, sha256_regular_file
from ..policy.rules import (
    Decision,
    judge_baseline_ratio,
    judge_key_signer,
    judge_keyless_signer,
    judge_perplexity,
    judge_signing_time,
)
from .results import (
    ArtifactIdentity,
    CheckResult,
    CheckStatus,
    Digests,
    Environment,
    Environments,
    FileCheck,
    PerplexityComparison,
    PerplexityMeasurement,
    PolicyRecord,
    Reconstruction,
    Results,
    SignerIdentity,
    TensorCheck,
    ToolInfo,
    block_of,
    derive_verdict,
    summarize_blocks,
    verdict_reasons,
)

MAX_BUNDLE_BYTES = 64 << 20


@dataclass(frozen=True)
class CheckInputs:
    """Everything ``attest check`` needs; exactly one trust anchor (key, or root + identity + issuer)."""

    pack: Path
    policy: LoadedPolicy
    bundle: Path | None = None
    tokens: Path | None = None
    public_key: Path | None = None
    trusted_root: Path | None = None
    identity: str | None = None
    issuer: str | None = None
    progress: bool = True
    now: datetime | None = None
    fail_fast: bool = False  # stop before the costly stages once a required check has failed


@dataclass
class CheckOutcome:
    """The results, plus the bundle bytes they were made for (the report embeds them)."""

    results: Results
    bundle_bytes: bytes
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage (not part of the results)


@dataclass
class _State:
    checks: list[CheckResult] = field(default_factory=list)

    def add(self, name: str, title: str, status: CheckStatus, required: bool, summary: str, details: dict[str, Any] | None = None) -> CheckResult:
        check = CheckResult(name=name, title=title, status=status, required=required, summary=summary, details=details or {})
        self.checks.append(check)
        return check

    def decide(self, name: str, title: str, decision: Decision, required: bool = True) -> CheckResult:
        status = CheckStatus.PASS if decision.ok else CheckStatus.FAIL
        return self.add(name, title, status, required, decision.summary, _jsonable(decision.details))

    def skip(self, name: str, title: str, why: str, required: bool = True) -> CheckResult:
        return self.add(name, title, CheckStatus.SKIP, required, why)

    def failed(self) -> bool:
        """Whether a required check has failed so far (the verdict can no longer be PASS)."""
        return any(c.required and c.status == CheckStatus.FAIL for c in self.checks)


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in details.items():
        if isinstance(value, float) and value != value:  # NaN
            out[key] = None
        elif isinstance(value, (str, int, float, bool)) or value is None:
            out[key] = value
        else:
            out[key] = str(value)
    return out


TITLES = {
    "signature": "Vendor signature is genuine",
    "signer_trust": "Signer is trusted by the policy",
    "attestation_age": "Attestation is recent and not expired",
    "pack_files": "Every pack file matches the signed hash",
    "pack_structure": "Pack structure is valid",
    "weights_bit_exact": "Rebuilt weights are identical to the signed ones",
    "eval_tokens": "Evaluation text is the one the vendor measured on",
    "perplexity_match": "Quality measured here matches the signed figure",
    "baseline_ratio": "Quality loss against the original model is acceptable",
}


def _read_bundle(path: Path) -> bytes:
    return read_input_file(path, "bundle", MAX_BUNDLE_BYTES)


def _sha256_file(path: Path) -> str:
    return sha256_regular_file(path, follow_symlinks=False)[1]


def _present_files(root: Path) -> tuple[dict[str, tuple[int, str]], list[str]]:
    """``{relative path: (size, sha256)}`` of every regular file under ``root``, and what else was found."""
    found: dict[str, tuple[int, str]] = {}
    odd: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in sorted(dirnames):
            if (Path(dirpath) / name).is_symlink():
                odd.append(f"{(Path(dirpath) / name).relative_to(root).as_posix()}: symlinked directory")
        dirnames[:] = sorted(d for d in dirnames if not (Path(dirpath) / d).is_symlink())
        for name in sorted(filenames):
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if full.is_symlink() or not full.is_file():
                odd.append(f"{rel}: not a regular file")
                continue
            try:
                found[rel] = sha256_regular_file(full, follow_symlinks=False)
            except OSError as exc:  # swapped for a FIFO or device since the walk: refused, never read
                odd.append(f"{rel}: {exc.strerror or 'not a regular file'}")
    return found, odd


def _environment(info: Any) -> Environment:
    """Our flat view of an ``EnvironmentInfo`` (vendor's, from the predicate, or ours)."""
    data = info.model_dump(mode="json")
    packages = dict(data.pop("packages", {}) or {})
    env_vars = dict(data.pop("env", {}) or {})
    known = {
        "python": data.pop("python", None),
        "platform": data.pop("os", None),
        "machine": data.pop("machine", None),
        "processor": data.pop("cpu_model", None),
        "device": data.pop("device", None),
        "gpu": data.pop("gpu_model", None),
        "dtype": data.pop("dtype", None),
        "threads": data.pop("threads", None),
        "torch": packages.pop("torch", None),
        "transformers": packages.pop("transformers", None),
        "uc_attest": packages.pop("uc_attest", None),
    }
    other = {k: str(v) for k, v in data.items() if v is not None}
    other.update({f"package {k}": str(v) for k, v in packages.items()})
    other.update({f"env {k}": str(v) for k, v in env_vars.items()})
    return Environment(**known, other=other)


def _measurement_from_predicate(m: Any) -> PerplexityMeasurement:
    p = m.pack
    return PerplexityMeasurement(
        perplexity=p.perplexity,
        perplexity_hex=p.perplexity_hex,
        tokens=p.predicted_tokens,
        windows=m.windows,
        seq_len=m.seq_len,
        method=m.method,
        window_nll=list(p.window_nll),
        window_nll_hex=list(p.window_nll_hex),
    )


def _measurement_from_eval(e: Any) -> PerplexityMeasurement:
    return PerplexityMeasurement(
        perplexity=e.perplexity,
        perplexity_hex=e.perplexity_hex,
        tokens=e.tokens,
        windows=e.windows,
        seq_len=e.seq_len,
        method=e.method,
        window_nll=list(e.window_nll),
        window_nll_hex=list(e.window_nll_hex),
    )


def _expected_signer(inputs: CheckInputs) -> SignerIdentity:
    """Who the customer expects, for the results when the signature did not verify."""
    if inputs.public_key is not None:
        from ..attest.keys import fingerprint, load_public_key

        return SignerIdentity(mode="key", key_fingerprint=fingerprint(load_public_key(inputs.public_key)), verified=False)
    return SignerIdentity(mode="keyless", identity=inputs.identity, issuer=inputs.issuer, verified=False)


def run_check(inputs: CheckInputs) -> CheckOutcome:
    """Run every check on ``inputs`` and return the results (verdict included)."""
    from ..attest import verify_bundle
    from ..attest.errors import AttestationError
    from ..attest.paths import default_bundle_path, tokens_path_for_bundle

    policy = inputs.policy.policy
    now = (inputs.now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
    pack_root = Path(inputs.pack)
    if not pack_root.is_dir():
        raise UsageError(f"no such pack directory: {pack_root}")
    bundle_path = Path(inputs.bundle) if inputs.bundle else default_bundle_path(pack_root)
    bundle_bytes = _read_bundle(bundle_path)
    tokens_path = Path(inputs.tokens) if inputs.tokens else tokens_path_for_bundle(bundle_path)
    state = _State()
    expected_signer = _expected_signer(inputs)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now_ = time.perf_counter()
        timings[stage] = round(now_ - clock, 3)
        clock = now_

    # 1. signature
    verified = None
    try:
        if inputs.public_key is not None:
            verified = verify_bundle(bundle_bytes, public_key=inputs.public_key, allow_expired=True)
        else:
            verified = verify_bundle(bundle_bytes, trusted_root=inputs.trusted_root, identity=inputs.identity, issuer=inputs.issuer, allow_expired=True)
        signer = verified.signer
        how = f"key sha256:{signer.key_fingerprint}" if signer.mode == "key" else f"{signer.identity} (issuer {signer.issuer})"
        state.add("signature", TITLES["signature"], CheckStatus.PASS, True, f"The DSSE signature over the in-toto statement verifies for {how}.", {"mode": signer.mode})
    except AttestationError as exc:
        state.add("signature", TITLES["signature"], CheckStatus.FAIL, True, f"{exc} ({type(exc).__name__}).", {"error": type(exc).__name__})

    predicate = verified.predicate if verified else None
    signer_identity = (
        SignerIdentity(**verified.signer.model_dump()) if verified is not None else expected_signer
    )

    lap("signature")

    # 2. policy on signer and age
    if verified is None or predicate is None:
        for name in ("signer_trust", "attestation_age"):
            state.skip(name, TITLES[name], "Not checked: the signature did not verify.")
    else:
        if verified.signer.mode == "key":
            decision = judge_key_signer(verified.signer.key_fingerprint or "", predicate.signed_at, policy.signer)
        else:
            decision = judge_keyless_signer(verified.signer.identity or "", verified.signer.issuer or "", predicate.signed_at, policy.signer)
        state.decide("signer_trust", TITLES["signer_trust"], decision)
        state.decide("attestation_age", TITLES["attestation_age"], judge_signing_time(predicate.signed_at, predicate.expires_at, now, policy.attestation))

    # 3. files, structure, weights
    lap("signer policy")
    files, attested_tokens = _check_files(state, verified, pack_root, policy.weights.allow_unattested_files)
    lap("file hashes")
    if inputs.fail_fast and state.failed():
        found = _skip_structure_and_weights(state, predicate, pack_root, policy.weights.require_bit_exact)
    else:
        found = _check_structure_and_weights(state, predicate, pack_root, inputs.progress, policy.weights.require_bit_exact)
    manifest_sha, model_type, model_name, source_note, pack_ok, tensors = found
    lap("pack verify and reconstruction")

    # 4. tokens and perplexity
    comparison, customer_env = _check_quality(state, inputs, predicate, pack_root, tokens_path, attested_tokens, pack_ok)
    lap("tokens, model load and perplexity")

    if customer_env is None:
        from ..evaluate.environment import capture_environment

        customer_env = _environment(capture_environment(None))
    statement_sha = hashlib.sha256(verified.payload).hexdigest() if verified is not None else None
    results = Results(
        tool=ToolInfo(version=__version__),
        verdict=derive_verdict(state.checks),
        verdict_reasons=verdict_reasons(state.checks),
        artifact=ArtifactIdentity(
            model_type=model_type,
            model_name=model_name,
            model_source_note=source_note,
            pack_manifest_sha256=manifest_sha,
            signer=signer_identity,
            signed_at=predicate.signed_at if predicate else None,
            expires_at=predicate.expires_at if predicate else None,
            checked_at=now,
        ),
        policy=PolicyRecord(name=policy.name, source=inputs.policy.source, sha256=inputs.policy.sha256, text=inputs.policy.text),
        digests=Digests(
            bundle_sha256=hashlib.sha256(bundle_bytes).hexdigest(),
            pack_manifest_sha256=manifest_sha,
            policy_sha256=inputs.policy.sha256,
            statement_sha256=statement_sha,
        ),
        checks=state.checks,
        perplexity=comparison,
        reconstruction=Reconstruction(tensors=tensors, blocks=summarize_blocks(tensors)),
        files=files,
        environments=Environments(vendor=_environment(predicate.environment) if predicate else None, customer=customer_env),
    )
    lap("results")
    return CheckOutcome(results=results, bundle_bytes=bundle_bytes, timings=timings)


def _check_files(state: _State, verified: Any, root: Path, allow_unattested: bool) -> tuple[list[FileCheck], str | None]:
    """Every file present against the signed subjects; returns the file rows and the signed token digest."""
    from ..attest.subjects import split_subjects

    present, odd = _present_files(root)
    name = "pack_files"
    if verified is None:
        rows = [FileCheck(path=p, size=s, sha256=h, attested_sha256=None, status=CheckStatus.SKIP) for p, (s, h) in sorted(present.items())]
        state.skip(name, TITLES[name], "Not checked: without a verified signature there are no signed hashes to compare with.")
        return rows, None
    try:
        attested, tokens_sha = split_subjects(verified.statement)
    except VerificationError as exc:
        state.add(name, TITLES[name], CheckStatus.FAIL, True, f"The signed statement's subjects cannot be used: {exc}")
        return [], None
    rows: list[FileCheck] = []
    missing, differ, extra = [], [], []
    for path in sorted(set(attested) | set(present)):
        size, sha = present.get(path, (None, None))
        signed = attested.get(path)
        if sha is None:
            status = CheckStatus.FAIL
            missing.append(path)
        elif signed is None:
            status = CheckStatus.SKIP if allow_unattested else CheckStatus.FAIL
            extra.append(path)
        else:
            status = CheckStatus.PASS if sha == signed else CheckStatus.FAIL
            if sha != signed:
                differ.append(path)
        rows.append(FileCheck(path=path, size=size, sha256=sha, attested_sha256=signed, status=status))
    problems = []
    if differ:
        problems.append(f"{len(differ)} file(s) differ from the signed hash: {', '.join(differ[:3])}{'...' if len(differ) > 3 else ''}")
    if missing:
        problems.append(f"{len(missing)} signed file(s) are missing: {', '.join(missing[:3])}{'...' if len(missing) > 3 else ''}")
    if extra and not allow_unattested:
        problems.append(f"{len(extra)} file(s) are not covered by the signature: {', '.join(extra[:3])}{'...' if len(extra) > 3 else ''}")
    if odd:
        problems.append(f"{len(odd)} entries are not regular files: {', '.join(odd[:3])}")
    details = {"files": len(rows), "differ": len(differ), "missing": len(missing), "unsigned": len(extra)}
    if problems:
        state.add(name, TITLES[name], CheckStatus.FAIL, True, "; ".join(problems) + ".", details)
    else:
        tolerated = f"; {len(extra)} unsigned file(s) tolerated by the policy" if extra else "; no unsigned files"
        state.add(name, TITLES[name], CheckStatus.PASS, True, f"All {len(attested)} signed files are present with the SHA-256 in the signed statement{tolerated}.", details)
    return rows, tokens_sha


class _PackFindings(NamedTuple):
    """What the structure and weight checks learnt about the pack, for the results."""

    manifest_sha: str
    model_type: str
    model_name: str
    source_note: str  # the manifest's note on the weights' origin; empty unless the pack is the signed one
    pack_ok: bool
    tensors: list[TensorCheck]


def _skip_structure_and_weights(
    state: _State, predicate: Any, root: Path, require_bit_exact: bool
) -> _PackFindings:
    """--fail-fast after a failed check: no reconstruction (minutes on a large pack), the verdict is already FAIL."""
    from ..pack.manifest import MANIFEST_NAME

    try:
        manifest_sha = _sha256_file(root / MANIFEST_NAME)
    except FileNotFoundError:
        raise UsageError(f"{root} is not a pack: no {MANIFEST_NAME}") from None
    except OSError as exc:  # a FIFO, device or symlink in its place: a tampered pack
        raise VerificationError(f"{MANIFEST_NAME}: {exc.strerror or exc}") from None
    why = "Not checked: an earlier required check failed and --fail-fast stops there."
    state.skip("pack_structure", TITLES["pack_structure"], why)
    state.skip("weights_bit_exact", TITLES["weights_bit_exact"], why, require_bit_exact)
    model_type = predicate.pack.model_type if predicate else "unknown"
    return _PackFindings(manifest_sha, model_type, "unknown", "", False, [])


def _check_structure_and_weights(
    state: _State, predicate: Any, root: Path, progress: bool, require_bit_exact: bool
) -> _PackFindings:
    """``uc verify`` on the pack, then every rebuilt tensor digest against the signed one."""
    from ..pack.manifest import MANIFEST_NAME
    from ..pack.verify import verify_pack

    manifest_path = root / MANIFEST_NAME
    try:
        manifest_sha = _sha256_file(manifest_path)
    except FileNotFoundError:
        raise UsageError(f"{root} is not a pack: no {MANIFEST_NAME}") from None
    except OSError as exc:  # a FIFO, device or symlink in its place: a tampered pack
        raise VerificationError(f"{MANIFEST_NAME}: {exc.strerror or exc}") from None
    model_type = predicate.pack.model_type if predicate else "unknown"
    model_name = "unknown"
    source_note = ""
    report = None
    try:
        report = verify_pack(root, progress=progress, architecture=True)
        from ..pack.reader import open_pack

        opened = open_pack(root)
        model_type = opened.manifest.model.model_type
        model_name = opened.manifest.model.source.name
        source_note = opened.manifest.model.source.note
    except UcError as exc:
        state.add("pack_structure", TITLES["pack_structure"], CheckStatus.FAIL, True, f"The pack cannot be read: {exc}")
    if report is not None:
        if report.ok:
            state.add("pack_structure", TITLES["pack_structure"], CheckStatus.PASS, True,
                      f"Manifest {report.format} {report.format_version} read strictly; {len(report.files)} files and {len(report.tensors)} tensors verified against it.",
                      {"files": len(report.files), "tensors": len(report.tensors)})
        else:
            more = f" (+{len(report.failures) - 1} more)" if len(report.failures) > 1 else ""
            state.add("pack_structure", TITLES["pack_structure"], CheckStatus.FAIL, True, f"{report.failures[0]}{more}", {"failures": len(report.failures)})

    name = "weights_bit_exact"
    tensors: list[TensorCheck] = []
    if predicate is None:
        state.skip(name, TITLES[name], "Not checked: without a verified signature there are no signed fingerprints.", require_bit_exact)
        return _PackFindings(manifest_sha, model_type, model_name, "", False, tensors)
    rebuilt = {t.name: t for t in report.tensors} if report is not None else {}
    signed = {t.name: t for t in predicate.pack.tensors}
    bad: list[str] = []
    for tensor_name in sorted(set(signed) | set(rebuilt)):
        s, r = signed.get(tensor_name), rebuilt.get(tensor_name)
        computed = r.digest if (r is not None and r.ok) else None
        ok = s is not None and computed is not None and computed == s.digest
        if not ok:
            bad.append(tensor_name)
        kind = s.kind if s is not None else (r.kind if r is not None else "unknown")
        tensors.append(TensorCheck(name=tensor_name, block=block_of(tensor_name), kind=kind, attested_digest=s.digest if s else None,
                                   computed_digest=computed, status=CheckStatus.PASS if ok else CheckStatus.FAIL))
    details = {"tensors": len(tensors), "mismatched": len(bad)}
    if report is None:
        state.add(name, TITLES[name], CheckStatus.FAIL, require_bit_exact, "The weights could not be rebuilt: the pack cannot be read.", details)
    elif bad:
        state.add(name, TITLES[name], CheckStatus.FAIL, require_bit_exact,
                  f"{len(tensors) - len(bad)} of {len(tensors)} tensors identical; {len(bad)} differ or are missing ({', '.join(bad[:3])}{'...' if len(bad) > 3 else ''}).", details)
    else:
        state.add(name, TITLES[name], CheckStatus.PASS, require_bit_exact, f"All {len(tensors)} tensors rebuilt here are identical bit for bit to the signed fingerprints.", details)
    pack_ok = report is not None and report.ok and predicate.pack.manifest_sha256 == manifest_sha
    return _PackFindings(manifest_sha, model_type, model_name, source_note if pack_ok else "", pack_ok, tensors)


def _check_quality(
    state: _State,
    inputs: CheckInputs,
    predicate: Any,
    root: Path,
    tokens_path: Path,
    attested_tokens: str | None,
    pack_ok: bool,
) -> tuple[PerplexityComparison, Environment | None]:
    """Tokens against their signed digest, perplexity re-measured, ratio to the baseline."""
    rules = inputs.policy.policy.perplexity
    measure = rules.remeasure
    if predicate is None:
        state.skip("eval_tokens", TITLES["eval_tokens"], "Not checked: the signature did not verify.", measure)
        state.skip("perplexity_match", TITLES["perplexity_match"], "Not measured: the signature did not verify.", measure and rules.required)
        state.skip("baseline_ratio", TITLES["baseline_ratio"], "Not checked: the signature did not verify.", rules.max_ratio_to_baseline is not None)
        return PerplexityComparison(relative_tolerance=rules.relative_tolerance, absolute_tolerance=rules.absolute_tolerance, max_ratio_to_baseline=rules.max_ratio_to_baseline), None

    m = predicate.measurement
    attested = _measurement_from_predicate(m)
    baseline = m.baseline.result.perplexity if m.baseline else None
    comparison: dict[str, Any] = {
        "attested": attested,
        "baseline_perplexity": baseline,
        "baseline_perplexity_hex": m.baseline.result.perplexity_hex if m.baseline else None,
        "dataset": f"{m.dataset.text_source}, {m.dataset.token_count} tokens (token file sha256 {m.dataset.sha256})",
        "relative_tolerance": rules.relative_tolerance,
        "absolute_tolerance": rules.absolute_tolerance,
        "max_ratio_to_baseline": rules.max_ratio_to_baseline,
    }
    customer_env: Environment | None = None
    measured_value: float | None = None
    ids = None
    if not measure:
        state.skip("eval_tokens", TITLES["eval_tokens"], "Not needed: the policy does not ask for a re-measurement.", False)
        state.skip("perplexity_match", TITLES["perplexity_match"], "Not measured: the policy does not ask for a re-measurement.", False)
    else:
        from ..evaluate.tokens import load_token_file, token_file_limit

        try:
            ids, _meta, sha = load_token_file(tokens_path, token_file_limit(m.dataset.token_count))
            if sha == attested_tokens:
                state.add("eval_tokens", TITLES["eval_tokens"], CheckStatus.PASS, True, f"{tokens_path.name}: SHA-256 equals the signed one ({ids.numel()} tokens).", {"sha256": sha})
            else:
                state.add("eval_tokens", TITLES["eval_tokens"], CheckStatus.FAIL, True, f"{tokens_path.name}: SHA-256 {sha[:16]}... is not the signed {str(attested_tokens)[:16]}...", {"sha256": sha})
                ids = None
        except UcError as exc:
            state.add("eval_tokens", TITLES["eval_tokens"], CheckStatus.FAIL, True, f"The evaluation token file cannot be used: {exc}")
        model = None
        if ids is None or not pack_ok:
            why = "the pack is not the one signed" if not pack_ok else "the evaluation tokens are not the signed ones"
            state.skip("perplexity_match", TITLES["perplexity_match"], f"Not measured: {why}.", rules.required)
        else:
            from ..evaluate.environment import capture_environment
            from ..evaluate.loading import load_pack_model
            from ..evaluate.perplexity import evaluate_tokens

            try:
                # pinned to the signed manifest: a pack swapped after verification fails here, never gets measured
                model = load_pack_model(root, expected_manifest_sha256=predicate.pack.manifest_sha256)
            except UcError as exc:
                # an integrity failure, not a quality judgement: required whatever the policy says of perplexity
                state.add("perplexity_match", TITLES["perplexity_match"], CheckStatus.FAIL, True,
                          f"Not measured: the pack changed after it was verified ({exc}).")  # fmt: skip
        if model is not None:
            result = evaluate_tokens(model, ids, seq_len=m.seq_len, max_windows=m.max_windows, progress=inputs.progress)
            customer_env = _environment(capture_environment(model, dtype=result.compute_dtype))
            del model
            measured = _measurement_from_eval(result)
            measured_value = measured.perplexity
            decision = judge_perplexity(attested.perplexity, measured.perplexity, rules)
            state.decide("perplexity_match", TITLES["perplexity_match"], decision, rules.required)
            comparison.update(
                measured=measured,
                abs_difference=abs(measured.perplexity - attested.perplexity),
                rel_difference=abs(measured.perplexity - attested.perplexity) / attested.perplexity,
                bit_identical=measured.perplexity_hex == attested.perplexity_hex,
                window_nll_diff=[a - b for a, b in zip(measured.window_nll, attested.window_nll, strict=True)] if measured.windows == attested.windows else [],
            )

    value = measured_value if measured_value is not None else attested.perplexity
    if baseline is not None:
        comparison["ratio_to_baseline"] = value / baseline
        which = "the figure measured here" if measured_value is not None else "the vendor's signed figure"
        decision = judge_baseline_ratio(value, baseline, rules.max_ratio_to_baseline)
        state.decide("baseline_ratio", TITLES["baseline_ratio"], Decision(decision.ok, f"With {which}: {decision.summary}", decision.details),
                     rules.max_ratio_to_baseline is not None)
    elif rules.max_ratio_to_baseline is not None:
        state.add("baseline_ratio", TITLES["baseline_ratio"], CheckStatus.FAIL, True,
                  "The policy limits the ratio to the original model, but the attestation carries no measurement of the original model.")
    else:
        state.skip("baseline_ratio", TITLES["baseline_ratio"], "Not checked: no original-model measurement and no limit in the policy.", False)
    return PerplexityComparison(**comparison), customer_env
