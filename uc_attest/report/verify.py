"""``attest verify-report``: is this report's verdict genuine, and are its pages the ones it claims?

An auditor (today, or in ten years) holds a PDF and two trust anchors: the
vendor's (who signed the acceptance test) and the customer's (who signed the
verdict). The report is VERIFIED only when all of these hold:

1. its embedded files are exactly results.json, the vendor's bundle, the
   policy and the customer's signed verdict (VSA), each read with a size cap;
2. the vendor's bundle verifies under the vendor's anchor, and the results
   were made for that bundle and agree with what it signs;
3. the VSA verifies under the customer's anchor, pins results.json's exact
   bytes, this pack, this vendor bundle, this policy and this verdict;
4. (key mode) the PDF carries one PAdES signature by the customer's key that
   covers the whole file;
5. the pages are byte for byte a fresh rendering of the embedded (signed)
   results: a page that differs is a FAIL, not a remark.

A report whose verdict nobody signed can at best show the vendor's
attestation; it ends NOT VERIFIED because its verdict is not evidence.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..check.results import Results, load_results
from ..errors import UnreadableInputError, UsageError, VerificationError
from .attachments import read_attachments
from .render import BUNDLE_ATTACHMENT, POLICY_ATTACHMENT, RESULTS_ATTACHMENT, VSA_ATTACHMENT

ATTACHMENT_CAPS = {RESULTS_ATTACHMENT: 64 << 20, BUNDLE_ATTACHMENT: 64 << 20, POLICY_ATTACHMENT: 1 << 20, VSA_ATTACHMENT: 64 << 20}
"""Bytes each embedded file may inflate to. results.json of a 30-layer model is about 0.3 MB (one row per
tensor and per evaluation window), so 64 MiB leaves room for models hundreds of times larger."""


@dataclass(frozen=True)
class CustomerTrust:
    """The customer's trust anchor: its public key, or a Sigstore root with identity and issuer."""

    key: Path | None = None
    trusted_root: Path | None = None
    identity: str | None = None
    issuer: str | None = None

    @property
    def given(self) -> bool:
        return self.key is not None or self.identity is not None


@dataclass
class ReportVerification:
    """What :func:`verify_report_bytes` found; ``lines`` are for people, in order; ``problems`` decide."""

    results: Results | None = None
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return not self.problems

    def ok(self, text: str) -> None:
        self.lines.append(f"ok    {text}")

    def fail(self, text: str) -> None:
        self.lines.append(f"FAIL  {text}")
        self.problems.append(text)


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


def _check_vendor(outcome: ReportVerification, files: dict[str, bytes], results: Results, verify_vendor: Callable[[bytes], Any]) -> None:
    bundle = files.get(BUNDLE_ATTACHMENT)
    if bundle is None:
        outcome.fail(f"no {BUNDLE_ATTACHMENT} embedded: the vendor's attestation cannot be verified")
        return
    bundle_sha = hashlib.sha256(bundle).hexdigest()
    if bundle_sha != results.digests.bundle_sha256:
        outcome.fail(f"the embedded results were not made for the embedded attestation (bundle sha256 {bundle_sha[:16]}..., results record {results.digests.bundle_sha256[:16]}...)")
        return
    policy = files.get(POLICY_ATTACHMENT)
    if policy is None or hashlib.sha256(policy).hexdigest() != results.policy.sha256:
        outcome.fail("the embedded policy is missing or not the one recorded in the results")
    from ..attest.errors import AttestationError

    try:
        verified = verify_vendor(bundle)
    except AttestationError as exc:
        outcome.fail(f"vendor attestation: {exc}")
        return
    problems = _consistency_problems(results, verified)
    if problems:
        for problem in problems:
            outcome.fail(problem)
        return
    outcome.ok(f"vendor attestation: signature valid ({results.artifact.signer.describe()}); the results agree with it (pack manifest, {len(results.files)} file hashes, signer)")


def _check_customer(outcome: ReportVerification, files: dict[str, bytes], results: Results, customer: CustomerTrust) -> bool:
    """Verify the customer's signed verdict; True when it verified and matches."""
    from ..attest.errors import AttestationError
    from ..attest.verify import verify_signed_payload
    from ..attest.vsa import describe_time, parse_vsa, verdict_mismatches

    vsa = files.get(VSA_ATTACHMENT)
    if vsa is None:
        outcome.fail("verdict UNSIGNED: the customer did not sign this verdict (attest check without --sign-key), so it is not evidence")
        return False
    if not customer.given:
        raise UsageError("this report's verdict is signed: give the customer's trust anchor (--customer-key CUSTOMER.pub, or --trusted-root with --customer-identity and --customer-issuer)")
    try:
        signed = verify_signed_payload(vsa, public_key=customer.key, trusted_root=customer.trusted_root, identity=customer.identity, issuer=customer.issuer)
        verdict = parse_vsa(signed.payload)
    except AttestationError as exc:
        outcome.fail(f"customer's signed verdict: {exc}")
        return False
    mismatches = verdict_mismatches(verdict, results, files[RESULTS_ATTACHMENT], hashlib.sha256(files.get(BUNDLE_ATTACHMENT, b"")).hexdigest())
    pinned = {f.path: f.sha256 for f in results.files if f.sha256 is not None}
    if any(verdict.pack_files.get(path) != digest for path, digest in pinned.items()):
        mismatches.append("the signed verdict pins other pack file hashes than the results record")
    for problem in mismatches:
        outcome.fail(problem)
    if mismatches:
        return False
    who = f"key sha256:{signed.signer.key_fingerprint}" if signed.signer.mode == "key" else f"{signed.signer.identity} (issuer {signed.signer.issuer})"
    outcome.ok(f"customer's signed verdict: {verdict.summary.verification_result} signed by {who}; it pins results.json (sha256 {verdict.results_sha256}) and {len(verdict.pack_files)} pack files")
    outcome.lines.append(f"      time: {describe_time(verdict.summary.time_verified, signed.logged_at)}")
    return True


def _check_pages(outcome: ReportVerification, pdf_bytes: bytes, files: dict[str, bytes], results: Results, customer: CustomerTrust, source: str) -> None:
    """The PAdES signature (key mode) and the byte-for-byte re-rendering of the pages."""
    from .render import RenderError, render_report_bytes

    expect_pdf_signature = VSA_ATTACHMENT in files and customer.key is not None
    if expect_pdf_signature:
        from ..attest.keys import load_public_key
        from .pdf_signature import check_pdf_signature

        try:
            check = check_pdf_signature(pdf_bytes, load_public_key(customer.key), source)  # type: ignore[arg-type]
            outcome.ok(f"PDF signature (PAdES): intact, covers the whole file, by the customer's key ({check.signer_subject}); its time {check.signing_time} is the signer's own claim")
        except ValueError as exc:
            outcome.fail(f"PDF signature: {exc}")
    extra = {name: files[name] for name in (BUNDLE_ATTACHMENT, VSA_ATTACHMENT) if name in files}
    try:
        rendered = render_report_bytes(results, extra)
    except (RenderError, UsageError) as exc:
        outcome.fail(f"pages: the embedded results cannot be rendered again here ({exc})")
        return
    same = pdf_bytes.startswith(rendered) and len(pdf_bytes) > len(rendered) if expect_pdf_signature else pdf_bytes == rendered
    if same:
        outcome.ok("pages: byte for byte a fresh rendering of the embedded results" + (" (the signature is an update appended to them)" if expect_pdf_signature else ""))
    else:
        outcome.fail("pages: not byte-identical to a fresh rendering of the embedded results (edited pages, or another renderer version)")


def verify_report_bytes(
    pdf_bytes: bytes,
    verify_vendor: Callable[[bytes], Any],
    customer: CustomerTrust,
    *,
    source: str = "report",
) -> ReportVerification:
    """Check everything listed in the module docstring; problems are collected, not raised.

    ``verify_vendor`` is called with the vendor bundle's bytes and returns a
    verified attestation (raising an AttestationError on a bad one). Input that
    is not a uc_attest report at all raises UnreadableInputError (exit 2).
    """
    outcome = ReportVerification()
    files = read_attachments(pdf_bytes, ATTACHMENT_CAPS, source)
    if RESULTS_ATTACHMENT not in files:
        raise UnreadableInputError(f"{source}: no {RESULTS_ATTACHMENT} embedded; this is not a uc_attest report")
    results = load_results(files[RESULTS_ATTACHMENT], f"{source}: embedded {RESULTS_ATTACHMENT}")
    outcome.results = results
    unexpected = sorted(set(files) - set(ATTACHMENT_CAPS))
    if unexpected:
        outcome.fail(f"unexpected embedded file(s) {', '.join(unexpected)}: a uc_attest report embeds only {', '.join(sorted(ATTACHMENT_CAPS))}")
    else:
        outcome.ok(f"embedded files: {', '.join(sorted(files))}")
    _check_vendor(outcome, files, results, verify_vendor)
    _check_customer(outcome, files, results, customer)
    _check_pages(outcome, pdf_bytes, files, results, customer, source)
    return outcome


