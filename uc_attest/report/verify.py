"""Re-verify a report years later: its embedded evidence, not its pages, is what counts.

A report carries the signed attestation bundle and results.json. Verifying it
means: extract both, verify the bundle's signature offline, and check that the
results were made for exactly that bundle (the results record its SHA-256) and
agree with what the bundle signs (pack manifest digest, file hashes, signer).
Whether the visible pages are a faithful rendering is checked last, by
rendering the embedded results again and comparing bytes; that can only
succeed with the same renderer and fonts, so a difference there is reported
but is not by itself a failure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..check.results import Results, load_results
from ..errors import UnreadableInputError, UsageError, VerificationError
from .render import BUNDLE_ATTACHMENT, POLICY_ATTACHMENT, RESULTS_ATTACHMENT

MAX_REPORT_BYTES = 512 << 20


def extract_attachments(pdf_bytes: bytes, source: str = "report") -> dict[str, bytes]:
    """Every embedded file of a PDF, by name. Needs pikepdf (a general PDF reader)."""
    try:
        import pikepdf
    except ImportError:
        raise UsageError("reading a report's attachments needs pikepdf: pip install pikepdf") from None
    import io

    try:
        with pikepdf.open(io.BytesIO(pdf_bytes)) as pdf:
            out: dict[str, bytes] = {}
            for name, spec in pdf.attachments.items():
                out[str(name)] = bytes(spec.get_file().read_bytes())
            return out
    except pikepdf.PdfError as exc:
        raise UnreadableInputError(f"{source}: not a readable PDF ({' '.join(str(exc).split())[:200]})") from None


@dataclass
class ReportVerification:
    """What :func:`verify_report_bytes` established; ``lines`` are for people, in order."""

    results: Results
    verified: Any
    lines: list[str] = field(default_factory=list)
    pages_reproduced: bool | None = None


def _consistency_problems(results: Results, verified: Any) -> list[str]:
    """Where the results contradict the statement the bundle signs."""
    problems: list[str] = []
    predicate = verified.predicate
    if predicate.pack.manifest_sha256 != results.artifact.pack_manifest_sha256:
        problems.append("the pack manifest digest in the results is not the one the attestation signs")
    signer = verified.signer
    recorded = results.artifact.signer
    if signer.mode != recorded.mode or (
        signer.key_fingerprint != recorded.key_fingerprint if signer.mode == "key" else (signer.identity, signer.issuer) != (recorded.identity, recorded.issuer)
    ):
        problems.append(f"the results name signer {recorded.describe()}, but the attestation verifies for a different signer")
    if results.artifact.signed_at is not None and results.artifact.signed_at != predicate.signed_at:
        problems.append("the signing time in the results is not the one the attestation signs")
    if results.artifact.expires_at is not None and results.artifact.expires_at != predicate.expires_at:
        problems.append("the expiry in the results is not the one the attestation signs")
    attested = results.perplexity.attested
    signed_ppl = predicate.measurement.pack
    if attested is not None and (attested.perplexity_hex != signed_ppl.perplexity_hex or attested.window_nll_hex != list(signed_ppl.window_nll_hex)):
        problems.append("the vendor perplexity in the results is not the one the attestation signs")
    signed_tensors = {t.name: t.digest for t in predicate.pack.tensors}
    for t in results.reconstruction.tensors:
        if t.attested_digest is not None and signed_tensors.get(t.name) != t.attested_digest:
            problems.append(f"the results record a signed digest for tensor {t.name} that the attestation does not contain")
            break
    try:
        from ..attest.subjects import split_subjects

        signed_files, _tokens = split_subjects(verified.statement)
    except VerificationError as exc:
        return [*problems, str(exc)]
    for f in results.files:
        if f.attested_sha256 is not None and signed_files.get(f.path) != f.attested_sha256:
            problems.append(f"the results record a signed hash for {f.path} that the attestation does not contain")
    return problems


def verify_report_bytes(
    pdf_bytes: bytes,
    verify_bundle: Callable[[bytes], Any],
    *,
    source: str = "report",
    rerender: bool = True,
) -> ReportVerification:
    """Verify a report's embedded evidence; raise VerificationError (exit 1) on any mismatch.

    ``verify_bundle`` is called with the embedded bundle's bytes and must
    return a verified attestation (``uc_attest.attest.verify_bundle`` bound to
    the auditor's key or trusted root), raising on a bad signature.
    """
    files = extract_attachments(pdf_bytes, source)
    if RESULTS_ATTACHMENT not in files:
        raise UnreadableInputError(f"{source}: no {RESULTS_ATTACHMENT} embedded; this is not a uc_attest report")
    results = load_results(files[RESULTS_ATTACHMENT], f"{source}: embedded {RESULTS_ATTACHMENT}")
    bundle = files.get(BUNDLE_ATTACHMENT)
    if bundle is None:
        raise VerificationError(f"{source}: no {BUNDLE_ATTACHMENT} embedded, so the signature cannot be verified (re-render with attest report --bundle)")
    lines = [f"embedded files: {', '.join(sorted(files))}"]
    bundle_sha = hashlib.sha256(bundle).hexdigest()
    if bundle_sha != results.digests.bundle_sha256:
        raise VerificationError(f"{source}: the embedded results were not made for the embedded attestation (bundle sha256 {bundle_sha[:16]}..., results record {results.digests.bundle_sha256[:16]}...)")
    lines.append(f"results belong to the attestation: bundle sha256 {bundle_sha}")
    policy = files.get(POLICY_ATTACHMENT)
    if policy is not None and hashlib.sha256(policy).hexdigest() != results.policy.sha256:
        raise VerificationError(f"{source}: the embedded policy is not the one recorded in the results")
    verified = verify_bundle(bundle)
    lines.append(f"signature: valid ({results.artifact.signer.describe()})")
    problems = _consistency_problems(results, verified)
    if problems:
        raise VerificationError(f"{source}: {problems[0]}" + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""))
    lines.append(f"results agree with the signed statement: pack manifest {results.artifact.pack_manifest_sha256}, {len(results.files)} file hashes, signer")
    lines.append(f"policy: {results.policy.name} (sha256 {results.policy.sha256})")
    outcome = ReportVerification(results=results, verified=verified, lines=lines)
    if rerender:
        from .render import RenderError, render_report_bytes

        extra = {BUNDLE_ATTACHMENT: bundle}
        try:
            outcome.pages_reproduced = render_report_bytes(results, extra) == pdf_bytes
        except RenderError:
            outcome.pages_reproduced = False
        lines.append(
            "pages: identical, byte for byte, to a fresh rendering of the embedded results"
            if outcome.pages_reproduced
            else "pages: not byte-identical to a fresh rendering here (another renderer or font version, or edited pages); the embedded results are authoritative"
        )
    return outcome
