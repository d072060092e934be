"""Turn :class:`Results` into the plain values the report template shows.

All wording and number formatting for the auditor lives here, not in the
template, so that it can be tested and so that the template stays layout only.
Nothing here reads a clock or the environment: the report depends on the
results and the attachments alone.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..check.results import CheckStatus, Results, Verdict
from ..errors import UcError
from ..policy.describe import describe_policy, weakened_checks
from ..policy.loader import parse_policy
from ..policy.model import Policy
from .chart import format_nats, window_diff_svg
from .names import VSA_ATTACHMENT, report_identifier
from .probe_view import probe_view
from .verdict_signature import describe_verdict_signature


@dataclass(frozen=True)
class AttachmentInfo:
    """One file embedded in the PDF, as listed in the report."""

    name: str
    size: int
    sha256: str
    description: str


@dataclass(frozen=True)
class Row:
    """A label/value row; ``mono`` for digests and other copyable strings."""

    label: str
    value: str
    mono: bool = False
    note: str = ""


@dataclass
class ReportView:
    """Everything the template needs, already worded and formatted."""

    results: Results
    passed: bool
    title: str
    headline: str
    reasons: list[str]
    identity: list[Row]
    policy_lines: list[str]
    policy_rows: list[Row]
    policy_weakens: list[str]  # checks the policy turns off or makes advisory: shown beside the verdict
    checks: list[dict[str, Any]]
    perplexity_rows: list[Row]
    perplexity_note: str
    chart_svg: str | None
    chart_caption: str
    blocks: list[dict[str, Any]]
    weights_note: str
    mismatched_tensors: list[dict[str, Any]]
    environment: list[dict[str, Any]]
    files: list[dict[str, Any]]
    tensors: list[dict[str, Any]]
    attachments: list[AttachmentInfo]
    sha256sum_attachments: list[str]
    sha256sum_files: list[str]
    commands: dict[str, str]
    report_id: str
    metadata: dict[str, str] = field(default_factory=dict)
    verdict_signature: Any = None  # a verdict_signature.VerdictSignatureView: signed by whom, or UNSIGNED
    probe: Any = None  # a probe_view.ProbeView for the results of attest probe


def _signing_time_note(r: Results) -> str:
    """Whose word the vendor's signing time is: its own (key mode), or the transparency log's (keyless, as the check used)."""
    if r.artifact.signer.mode == "key":
        return "the vendor's own claim (key mode: no independent timestamp)"
    age = r.check("attestation_age")
    logged = age.details.get("signed_at") if age is not None else None
    return f"as the vendor states it; the transparency log's verified time, which the check used, is {logged}" if logged else "as the vendor states it"


def utc_text(moment: datetime | None) -> str:
    """'2025-03-01 14:05:09 UTC' or a dash."""
    if moment is None:
        return "-"
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def w3c_date(moment: datetime) -> str:
    """The W3C date-time form WeasyPrint reads from <meta name=dcterms.created>."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _num(value: float | None, digits: int = 6) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}f}"


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    units = ["bytes", "KiB", "MiB", "GiB", "TiB"]
    value = float(n)
    for unit in units:
        if value < 1024 or unit == units[-1]:
            return f"{n} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} bytes"


STATUS_WORDS = {CheckStatus.PASS: "PASS", CheckStatus.FAIL: "FAIL", CheckStatus.SKIP: "SKIP"}


def _identity_rows(r: Results) -> list[Row]:
    a = r.artifact
    signer = a.signer
    rows = [
        Row("Model", f"{a.model_name} (architecture: {a.model_type})", note=a.model_source_note),
        Row("Pack fingerprint", a.pack_manifest_sha256, mono=True, note="SHA-256 of the pack's manifest, which lists every file"),
    ]
    unverified = "NOT VERIFIED: the signature did not verify for this "
    if signer.mode == "key":
        note = "fingerprint of the vendor's public key" if signer.verified else unverified + "key (the one the customer expected)"
        rows.append(Row("Signed by (key)", f"sha256:{signer.key_fingerprint}", mono=True, note=note))
    else:
        note = f"identity vouched for by {signer.issuer}" if signer.verified else unverified + f"identity (issuer {signer.issuer})"
        rows.append(Row("Signed by", signer.identity or "-", note=note))
    unknown = "unknown: the attestation could not be verified"
    rows += [
        Row("Signed on", utc_text(a.signed_at) if a.signed_at else unknown, note=_signing_time_note(r) if a.signed_at else ""),
        Row("Valid until", utc_text(a.expires_at) if a.expires_at else (unknown if not a.signed_at else "no expiry stated")),
        Row("Checked on", utc_text(a.checked_at)),
        Row("Attestation file", r.digests.bundle_sha256, mono=True, note="SHA-256 of the signed attestation bundle"),
    ]
    return rows


def _parsed_policy(r: Results) -> Policy | None:
    try:
        return parse_policy(r.policy.text.encode("utf-8"), r.policy.source).policy
    except UcError:
        return None


def _policy_weakens(r: Results) -> list[str]:
    policy = _parsed_policy(r)
    if policy is None:
        return ["The policy text could not be interpreted by this version: which checks it weakens is unknown; see Appendix C."]
    return weakened_checks(policy)


def _policy_lines(r: Results) -> list[str]:
    policy = _parsed_policy(r)
    if policy is None:
        return ["The policy text could not be interpreted by this version; see the policy file in the appendix."]
    return describe_policy(policy)


def _checks(r: Results) -> list[dict[str, Any]]:
    return [
        {
            "index": i,
            "title": c.title,
            "name": c.name,
            "status": STATUS_WORDS[c.status],
            "css": c.status.value.lower(),
            "required": "required" if c.required else "advisory",
            "summary": c.summary,
        }
        for i, c in enumerate(r.checks, start=1)
    ]


def _perplexity(r: Results) -> tuple[list[Row], str, str | None, str]:
    p = r.perplexity
    rows: list[Row] = []
    att, mea = p.attested, p.measured
    rows.append(Row("Vendor's figure (signed)", _num(att.perplexity) if att else "-", note=f"exact: {att.perplexity_hex}" if att else ""))
    if mea:
        rows.append(Row("Figure measured here", _num(mea.perplexity), note=f"exact: {mea.perplexity_hex}"))
    else:
        why = "attest probe: the endpoint's figure is in section 2a" if r.probe is not None else "the policy does not ask for a re-measurement"
        rows.append(Row("Figure measured here", "not re-measured", note=why))
    if att and mea:
        if p.bit_identical:
            rows.append(Row("Difference", "none: identical bit for bit"))
        else:
            rel = f" ({p.rel_difference:.4%})" if p.rel_difference is not None else ""
            rows.append(Row("Difference", f"{_num(p.abs_difference, 8)}{rel}"))
        if p.relative_tolerance is not None or p.absolute_tolerance is not None:
            rel_t = p.relative_tolerance or 0.0
            abs_t = p.absolute_tolerance or 0.0
            allowed = "exact equality" if rel_t == 0 and abs_t == 0 else f"{rel_t:.2%} relative, {abs_t:g} absolute (larger of the two)"
            rows.append(Row("Allowed difference", allowed))
    if p.baseline_perplexity is not None:
        rows.append(Row("Original model (before compression)", _num(p.baseline_perplexity), note="vendor's signed figure"))
    if p.ratio_to_baseline is not None:
        limit = f"; at most {p.max_ratio_to_baseline:g} allowed" if p.max_ratio_to_baseline is not None else "; no limit set"
        rows.append(Row("Compressed / original", f"{p.ratio_to_baseline:.4f}{limit}"))
    source = mea or att
    if source:
        seq = f" of {source.seq_len} tokens" if source.seq_len else ""
        rows.append(Row("Test text", f"{source.windows} windows{seq}, {source.tokens} tokens scored" + (f"; {p.dataset}" if p.dataset else "")))
        rows.append(Row("Method", source.method))
    note = (
        "Perplexity is a standard measure of how well a language model predicts a fixed test text: lower is better. "
        "The vendor measured it before signing and signed the figure; this site measured it again on the same text. "
        "The weights are identical by construction, but the arithmetic of a measurement can differ slightly between "
        "processors, which is why the policy may allow a small tolerance."
    )
    chart = None
    caption = ""
    if p.window_nll_diff:
        chart = window_diff_svg(p.window_nll_diff)
        diffs = p.window_nll_diff
        same = sum(1 for d in diffs if d == 0)
        worst = max(range(len(diffs)), key=lambda i: abs(diffs[i]))
        caption = (
            f"Each bar is one window of test text: the model's total loss on that window (negative log-likelihood, "
            f"in nats) as measured here minus the vendor's (red: higher here, blue: lower here). "
            f"{same} of {len(diffs)} windows are identical"
        )
        caption += "." if same == len(diffs) else f"; the largest difference is {format_nats(diffs[worst])} in window {worst + 1}."
    elif att and not mea:
        caption = "No per-window comparison: perplexity was not re-measured."
    return rows, note, chart, caption


def _blocks(r: Results) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    blocks = [
        {
            "block": b.block,
            "tensors": b.tensors,
            "matched": b.matched,
            "mismatched": b.mismatched,
            "skipped": b.skipped,
            "status": STATUS_WORDS[b.status],
            "css": b.status.value.lower(),
        }
        for b in r.reconstruction.blocks
    ]
    bad = [
        {"name": t.name, "attested": _bare(t.attested_digest), "computed": _bare(t.computed_digest)}
        for t in r.reconstruction.tensors
        if t.status is CheckStatus.FAIL
    ]
    return blocks, bad


def _bare(digest: str | None) -> str:
    if digest is None:
        return "-"
    return digest.removeprefix("sha256:")


def _environment(r: Results) -> list[dict[str, Any]]:
    vendor = r.environments.vendor.rows() if r.environments.vendor else {}
    customer = r.environments.customer.rows()
    keys = list(dict.fromkeys([*vendor, *customer]))
    return [
        {
            "key": key,
            "vendor": vendor.get(key, "-"),
            "customer": customer.get(key, "-"),
            "differs": vendor.get(key) != customer.get(key),
        }
        for key in keys
    ]


def _files(r: Results) -> list[dict[str, Any]]:
    out = []
    for f in r.files:
        note, signed = "", ""
        if f.sha256 is None:
            note, signed = "missing from the pack; the signed hash is shown", f.attested_sha256 or ""
        elif f.attested_sha256 is None:
            note = "not covered by the signature"
        elif f.sha256 != f.attested_sha256:
            note, signed = "differs: the second hash is the signed one", f.attested_sha256
        out.append(
            {
                "path": f.path,
                "size": _size(f.size),
                "sha256": f.sha256 or "-",
                "signed": signed,
                "status": STATUS_WORDS[f.status],
                "css": f.status.value.lower(),
                "note": note,
            }
        )
    return out


def _tensors(r: Results) -> list[dict[str, Any]]:
    return [
        {
            "name": t.name,
            "kind": t.kind,
            "digest": _bare(t.computed_digest or t.attested_digest),
            "status": STATUS_WORDS[t.status],
            "css": t.status.value.lower(),
        }
        for t in r.reconstruction.tensors
    ]


def _headline(r: Results, passed: bool) -> str:
    policy = r.policy.name
    if passed:
        return (
            f"The model pack delivered is the one the vendor signed, and every check that the policy "
            f"'{policy}' requires has passed. The pack may be accepted under this policy."
        )
    return (
        f"At least one check that the policy '{policy}' requires did not pass. "
        "The pack must not be accepted under this policy. The reasons are:"
    )


def attachment_infos(attachments: dict[str, bytes], descriptions: dict[str, str]) -> list[AttachmentInfo]:
    """Describe the embedded files, sorted by name (the order they are embedded in)."""
    return [
        AttachmentInfo(name, len(data), hashlib.sha256(data).hexdigest(), descriptions.get(name, ""))
        for name, data in sorted(attachments.items())
    ]


def build_view(
    r: Results,
    attachments: dict[str, bytes],
    descriptions: dict[str, str],
    names: dict[str, str],
) -> ReportView:
    """Assemble the :class:`ReportView`; ``names`` maps 'bundle'/'results'/'policy' to attachment names."""

    passed = r.verdict is Verdict.PASS
    ppl_rows, ppl_note, chart, caption = _perplexity(r)
    blocks, bad = _blocks(r)
    infos = attachment_infos(attachments, descriptions)
    report_id = report_identifier(attachments)
    key_arg = (
        "--key vendor.pub"
        if r.artifact.signer.mode == "key"
        else f"--trusted-root trusted_root.json --identity {r.artifact.signer.identity} --issuer {r.artifact.signer.issuer}"
    )
    bundle_name = names.get("bundle", "attestation.sigstore.json")
    policy_name = names.get("policy", "policy.toml")
    results_name = names.get("results", "results.json")
    commands = {
        "verify_report": f"attest verify-report report.pdf {key_arg}" + (" --customer-key customer.pub" if VSA_ATTACHMENT in attachments else ""),
        "extract": f"qpdf --show-attachment={results_name} report.pdf > {results_name}",
        "extract_all": "pdfdetach -saveall report.pdf",
        "check": f"attest check PACK_DIR --bundle {bundle_name} {key_arg} --policy {policy_name} --json results.json --report report.pdf",
        "sha_attachments": "sha256sum -c attachments.sha256",
        "sha_files": "cd PACK_DIR && sha256sum -c pack.sha256",
    }
    tested = r.reconstruction.tensors
    weights_note = (
        "Each compressed weight matrix is rebuilt here from the pack by one fixed arithmetic rule, and a fingerprint "
        "(SHA-256) of every rebuilt tensor is compared with the fingerprint the vendor signed. 'Identical' means equal "
        "bit for bit. The table groups the tensors by model block (one transformer layer per row)."
    )
    if not tested:
        weights_note += " No tensor results are recorded in these results."
    sha_files = [f"{f.sha256}  {f.path}" for f in r.files if f.sha256]
    title = f"Acceptance-test audit report: {r.artifact.model_name}"
    metadata = {
        "title": f"{title} ({r.verdict.value})",
        "author": f"uc_attest {r.tool.version}",
        "description": f"Verdict {r.verdict.value} for pack {r.artifact.pack_manifest_sha256} under policy {r.policy.name}",
        "keywords": f"uc_attest, attestation, audit, verdict {r.verdict.value}, {r.artifact.model_name}",
        "generator": f"uc_attest {r.tool.version}",
        "created": w3c_date(r.artifact.checked_at),
    }
    return ReportView(
        results=r,
        passed=passed,
        title=title,
        headline=_headline(r, passed),
        reasons=[] if passed else list(r.verdict_reasons),
        identity=_identity_rows(r),
        policy_lines=_policy_lines(r),
        policy_weakens=_policy_weakens(r),
        policy_rows=[
            Row("Policy", f"{r.policy.name}", note=r.policy.source),
            Row("Policy file SHA-256", r.policy.sha256, mono=True),
        ],
        checks=_checks(r),
        perplexity_rows=ppl_rows,
        perplexity_note=ppl_note,
        chart_svg=chart,
        chart_caption=caption,
        blocks=blocks,
        weights_note=weights_note,
        mismatched_tensors=bad,
        environment=_environment(r),
        files=_files(r),
        tensors=_tensors(r),
        attachments=infos,
        sha256sum_attachments=[f"{a.sha256}  {a.name}" for a in infos],
        sha256sum_files=sha_files,
        commands=commands,
        report_id=report_id,
        metadata=metadata,
        verdict_signature=describe_verdict_signature(attachments),
        probe=probe_view(r),
    )
