"""``attest verify-report``: is this report's verdict genuine, about this pack, and are its pages the ones it claims?

An auditor (today, or in ten years) holds a PDF and two trust anchors: the
vendor's (who signed the acceptance test) and the customer's (who signed the
verdict). The report is VERIFIED only when all of these hold:

0. its bytes are laid out exactly as our renderer and signer write them: the
   rendered report, then (key-signed verdict) exactly one incremental update
   holding the PDF signature, nothing else (:mod:`.signed_layout`); every
   embedded file is read from the rendered revision, never from a later one;
1. its embedded files are exactly results.json, the vendor's bundle, the
   policy and the customer's signed verdict (VSA), each read with a size cap;
2. the vendor's bundle verifies under the vendor's anchor, and the results
   were made for that bundle and agree with what it signs;
3. the VSA verifies under the customer's anchor, pins results.json's exact
   bytes, this pack, this vendor bundle, this policy and this verdict;
4. (key mode) the one update is a PAdES signature by the customer's key over
   every byte of the file but its own /Contents;
5. the pages are byte for byte a fresh rendering of the embedded (signed)
   results; where this machine's renderer is another version than the one
   that rendered the report, a key-signed report's pages are bound by the
   customer's PDF signature instead (and the output names both versions),
   while pages no signature covers are NOT BOUND, and the report is not
   VERIFIED (re-verify with the recorded renderer version);
6. when the auditor names the pack (``--pack``/``--manifest-sha256``), the
   report is about that pack.

A report whose verdict nobody signed can at best show the vendor's
attestation; it ends NOT VERIFIED because its verdict is not evidence.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from ..attest.trust import KeyAnchor, TrustAnchor
from ..check.results import Results, load_results
from ..errors import UnreadableInputError, UsageError, VerificationError
from .attachments import read_attachments
from .names import BUNDLE_ATTACHMENT, POLICY_ATTACHMENT, RESULTS_ATTACHMENT, VSA_ATTACHMENT
from .signed_layout import DamagedPdfError, LayoutError, ReportLayout, read_report_layout

MAX_REPORT_BYTES = 512 << 20
"""The largest report file read: the attachments (capped below) plus the rendered pages, with a wide margin."""

ATTACHMENT_CAPS = {RESULTS_ATTACHMENT: 64 << 20, BUNDLE_ATTACHMENT: 64 << 20, POLICY_ATTACHMENT: 1 << 20, VSA_ATTACHMENT: 64 << 20}
"""Bytes each embedded file may inflate to. results.json of a 30-layer model is about 0.3 MB (one row per
tensor and per evaluation window), so 64 MiB leaves room for models hundreds of times larger."""


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

    def note(self, text: str) -> None:
        """A line that neither passes nor fails anything: what was not checked, and why."""
        self.lines.append(f"note  {text}")


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


def _check_vendor(outcome: ReportVerification, files: dict[str, bytes], results: Results, vendor: TrustAnchor) -> None:
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
    from ..attest.verify import verify_bundle

    try:
        # Expiry is judged at check time by the policy; an auditor verifies authenticity, possibly years later.
        verified = verify_bundle(bundle, vendor, allow_expired=True)
    except AttestationError as exc:
        outcome.fail(f"vendor attestation: {exc}")
        return
    problems = _consistency_problems(results, verified)
    if problems:
        for problem in problems:
            outcome.fail(problem)
        return
    outcome.ok(f"vendor attestation: signature valid ({results.artifact.signer.describe()}); the results agree with it (pack manifest, {len(results.files)} file hashes, signer)")


def _check_customer(outcome: ReportVerification, files: dict[str, bytes], results: Results, customer: TrustAnchor | None) -> bool:
    """Verify the customer's signed verdict; True when it verified and matches."""
    from ..attest.errors import AttestationError
    from ..attest.verify import verify_signed_payload
    from ..check.vsa import describe_time, parse_vsa, verdict_mismatches

    vsa = files.get(VSA_ATTACHMENT)
    if vsa is None:
        outcome.fail("verdict UNSIGNED: the customer did not sign this verdict (attest check without --sign-key), so it is not evidence")
        return False
    if customer is None:
        raise UsageError("this report's verdict is signed: give the customer's trust anchor (--customer-key CUSTOMER.pub, or --trusted-root with --customer-identity and --customer-issuer)")
    try:
        signed = verify_signed_payload(vsa, customer)
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


def _check_pdf_signature(outcome: ReportVerification, pdf_bytes: bytes, layout: ReportLayout, files: dict[str, bytes], customer: TrustAnchor | None) -> bool:
    """The customer's PAdES signature (key-signed verdicts only); True when it binds the signed revision."""
    expected = VSA_ATTACHMENT in files and isinstance(customer, KeyAnchor)
    if layout.signature is None:
        if expected:
            outcome.fail("PDF signature: none, but a report whose verdict is signed with a key carries the customer's PDF signature")
        return False
    if not expected:
        why = "its verdict is unsigned" if VSA_ATTACHMENT not in files else "its verdict is signed keyless, and keyless verdicts carry no PDF signature"
        outcome.fail(f"structure: an update with a PDF signature follows the rendered report, but {why}: something was added after rendering")
        return False
    from .pdf_signature import check_pdf_signature

    assert isinstance(customer, KeyAnchor)
    try:
        check = check_pdf_signature(pdf_bytes, layout.signature, customer.key())
    except (ValueError, TypeError, KeyError) as exc:  # asn1crypto raises these for malformed CMS
        outcome.fail(f"PDF signature: {' '.join(str(exc).split())[:200]}")
        return False
    outcome.ok(
        f"PDF signature (PAdES): by the customer's key ({check.signer_subject}), over every byte of the file but its own /Contents; "
        f"its time {check.signing_time} is the signer's own claim"
    )
    return True


def _check_pages(outcome: ReportVerification, rendered: bytes, files: dict[str, bytes], results: Results, pages_signed: bool) -> None:
    """The pages: re-rendered byte for byte, or (another renderer version) bound by the customer's PDF signature, or not bound."""
    from . import render

    recorded = render.recorded_renderer(rendered)
    current = render.renderer_version()
    extra = {name: files[name] for name in (BUNDLE_ATTACHMENT, VSA_ATTACHMENT) if name in files}
    try:
        fresh: bytes | None = render.render_report_bytes(results, extra)
        why = ""
    except (render.RenderError, UsageError) as exc:
        fresh, why = None, f" (rendering failed here: {exc})"
    if fresh == rendered:
        tail = "; the PDF signature is the one update after them" if pages_signed else ""
        outcome.ok(f"pages: byte for byte a fresh rendering of the embedded results by {current}{tail}")
    elif recorded == current:
        outcome.fail(f"pages: not byte-identical to a fresh rendering of the embedded results by the same renderer ({current}): the pages were edited{why}")
    elif pages_signed:
        outcome.ok(
            f"pages: bound by the customer's PDF signature over the one signed revision, not re-rendered: "
            f"the report was rendered by {recorded}, this machine has {current}"
        )
    else:
        outcome.fail(
            f"pages: NOT BOUND: rendered by {recorded}, this machine has {current}, and no PDF signature covers them "
            f"(only a key-signed verdict carries one); the embedded results and signatures above are what verified, "
            f"so re-verify the pages with {recorded}{why}"
        )


def _check_pack(outcome: ReportVerification, results: Results, pack_manifest_sha256: str | None) -> None:
    """Whether the report is about the pack the auditor holds (the manifest digest is signed by both parties)."""
    about = results.artifact.pack_manifest_sha256
    if pack_manifest_sha256 is None:
        outcome.note(f"pack: not compared with a pack here (give --pack DIR or --manifest-sha256 HEX); the report is about manifest sha256 {about}")
    elif pack_manifest_sha256 == about:
        outcome.ok(f"pack: the report is about the given pack (manifest sha256 {about})")
    else:
        outcome.fail(f"pack: the report is about another pack (manifest sha256 {about}), not the given one ({pack_manifest_sha256})")


def verify_report_bytes(
    pdf_bytes: bytes,
    vendor: TrustAnchor,
    customer: TrustAnchor | None,
    *,
    source: str = "report",
    pack_manifest_sha256: str | None = None,
) -> ReportVerification:
    """Check everything listed in the module docstring; problems are collected, not raised.

    Input that is not a uc_attest report at all raises UnreadableInputError
    (exit 2); a report laid out otherwise than our signer writes it is a
    problem (NOT VERIFIED), reported with what was found.
    """
    outcome = ReportVerification()
    if not pdf_bytes.startswith(b"%PDF-"):
        raise UnreadableInputError(f"{source} is not a PDF file (it does not start with %PDF-)")
    try:
        layout = read_report_layout(pdf_bytes)
    except DamagedPdfError as exc:
        raise UnreadableInputError(f"{source} is a damaged or truncated PDF: {exc}") from None
    except LayoutError as exc:
        outcome.fail(f"structure: {exc}")
        return outcome
    if layout.signature is None:
        outcome.ok("structure: one revision (the rendered report), nothing appended")
    else:
        touched = ", ".join(str(n) for n in layout.signature.touched)
        outcome.ok(
            f"structure: the rendered report (bytes 0..{layout.rendered_end}) and exactly one signature update ending the file; "
            f"it redefines only the catalog and the signed page (objects {touched}); attachments are read from the rendered revision"
        )
    rendered = layout.rendered(pdf_bytes)
    files = read_attachments(rendered, ATTACHMENT_CAPS, source)
    if RESULTS_ATTACHMENT not in files:
        raise UnreadableInputError(f"{source}: no {RESULTS_ATTACHMENT} embedded; this is not a uc_attest report")
    results = load_results(files[RESULTS_ATTACHMENT], f"{source}: embedded {RESULTS_ATTACHMENT}")
    outcome.results = results
    unexpected = sorted(set(files) - set(ATTACHMENT_CAPS))
    if unexpected:
        outcome.fail(f"unexpected embedded file(s) {', '.join(unexpected)}: a uc_attest report embeds only {', '.join(sorted(ATTACHMENT_CAPS))}")
    else:
        outcome.ok(f"embedded files: {', '.join(sorted(files))}")
    _check_vendor(outcome, files, results, vendor)
    _check_customer(outcome, files, results, customer)
    pages_signed = _check_pdf_signature(outcome, pdf_bytes, layout, files, customer)
    _check_pages(outcome, rendered, files, results, pages_signed)
    _check_pack(outcome, results, pack_manifest_sha256)
    return outcome
