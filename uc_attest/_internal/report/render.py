"""Render :class:`Results` to a reproducible PDF/A-3b with its evidence attached.

Reproducibility is the point: an auditor who re-renders the embedded results
years later can get the very same bytes, so a report cannot quietly differ from
the results it carries. That means: dates come from the results, never from
the clock; the document identifier is derived from the embedded content; the
fonts are ours (templates/fonts), fetched only from the templates folder, with
no network and no system-font fallback allowed to slip in unnoticed.

PDF/A-3b (not 2b) because only part 3 may carry arbitrary embedded files;
WeasyPrint drops non-PDF attachment data for PDF/A-2, silently.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timezone
from pathlib import Path
from urllib.parse import unquote, urlsplit

import jinja2

from ..atomic import write_bytes_atomic
from ..check.results import Results
from ..errors import UsageError
from .determinism import FONTTOOLS_NOTICE, deterministic_fonts
from .resources import REPORT_TEMPLATE, templates_dir
from .names import BUNDLE_ATTACHMENT, POLICY_ATTACHMENT, RESULTS_ATTACHMENT, VSA_ATTACHMENT, report_identifier
from .view import build_view

ATTACHMENT_DESCRIPTIONS = {
    RESULTS_ATTACHMENT: "Machine-readable results of this check",
    BUNDLE_ATTACHMENT: "Signed attestation (Sigstore bundle: DSSE envelope with an in-toto Statement)",
    POLICY_ATTACHMENT: "Policy the verdict was made under",
    VSA_ATTACHMENT: "Customer's signed verdict (Sigstore bundle: DSSE envelope with a SLSA verification summary)",
}
# PDF/A-3 asks how each associated file relates to the document.
ATTACHMENT_RELATIONSHIPS = {RESULTS_ATTACHMENT: "Data", BUNDLE_ATTACHMENT: "Source", POLICY_ATTACHMENT: "Supplement", VSA_ATTACHMENT: "Supplement"}
PDF_VARIANT = "pdf/a-3b"


class RenderError(UsageError):
    """The report could not be rendered (missing template or font, renderer error)."""


def report_attachments(results: Results, extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    """The files to embed: the canonical results.json, the policy, and ``extra`` (the bundle).

    ``extra`` entries named like the standard attachments must be the files the
    results describe; a bundle or policy that does not hash to what the
    results record is refused, because the report would then attest nonsense.
    """
    files = dict(extra or {})
    canonical = results.to_json_bytes()
    if RESULTS_ATTACHMENT in files and files[RESULTS_ATTACHMENT] != canonical:
        raise UsageError(f"{RESULTS_ATTACHMENT} given as attachment differs from the results being rendered")
    files[RESULTS_ATTACHMENT] = canonical
    policy_bytes = results.policy.text.encode("utf-8")
    if POLICY_ATTACHMENT in files and hashlib.sha256(files[POLICY_ATTACHMENT]).hexdigest() != results.policy.sha256:
        raise UsageError("the policy file does not match the policy recorded in the results (SHA-256 differs)")
    files[POLICY_ATTACHMENT] = policy_bytes
    if BUNDLE_ATTACHMENT in files and hashlib.sha256(files[BUNDLE_ATTACHMENT]).hexdigest() != results.digests.bundle_sha256:
        raise UsageError("the bundle does not belong to these results (its SHA-256 differs from the one they record)")
    if VSA_ATTACHMENT in files:
        from .verdict_signature import check_vsa_belongs

        check_vsa_belongs(files[VSA_ATTACHMENT], canonical)
    for name in files:
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise UsageError(f"bad attachment name {name!r}")
    return files


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def render_html(results: Results, attachments: dict[str, bytes]) -> str:
    """The report as HTML (the input to WeasyPrint); useful to inspect and to test wording."""
    view = build_view(
        results,
        attachments,
        ATTACHMENT_DESCRIPTIONS,
        {"bundle": BUNDLE_ATTACHMENT, "policy": POLICY_ATTACHMENT, "results": RESULTS_ATTACHMENT},
    )
    try:
        template = _environment().get_template(REPORT_TEMPLATE)
        return template.render(v=view, has_bundle=BUNDLE_ATTACHMENT in attachments)
    except jinja2.TemplateError as exc:
        raise RenderError(f"report template error: {exc}") from None


ATTACHMENT_SCHEME = "uc-attest-attachment:"
ATTACHMENT_MIME_TYPES = {
    RESULTS_ATTACHMENT: "application/json",
    BUNDLE_ATTACHMENT: "application/json",
    POLICY_ATTACHMENT: "application/toml",
    VSA_ATTACHMENT: "application/json",
}


def _fetcher(root: Path, files: dict[str, bytes]):  # noqa: ANN202 - a WeasyPrint URLFetcher subclass instance
    """A URL fetcher that serves the templates folder and the in-memory attachments, nothing else.

    Attachments are fetched through it (not given as file objects) so that
    their MIME type is ours rather than a guess from the local mimetypes
    database, which differs between machines and would change the bytes.
    """
    from weasyprint.urls import FatalURLFetchingError, URLFetcher, URLFetcherResponse

    resolved_root = root.resolve()

    class ReportFetcher(URLFetcher):
        def fetch(self, url: str, headers: object = None) -> URLFetcherResponse:  # type: ignore[override]
            if url.startswith(ATTACHMENT_SCHEME):
                name = url.removeprefix(ATTACHMENT_SCHEME)
                if name not in files:
                    raise FatalURLFetchingError(f"unknown attachment {name}")
                mime = ATTACHMENT_MIME_TYPES.get(name, "application/octet-stream")
                return URLFetcherResponse(url, body=files[name], headers={"Content-Type": mime})
            parts = urlsplit(url)
            if parts.scheme != "file":
                raise FatalURLFetchingError(f"report refers to a non-local resource: {url}")
            path = Path(unquote(parts.path)).resolve()
            if resolved_root not in path.parents:
                raise FatalURLFetchingError(f"report refers to a file outside the templates: {path}")
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise FatalURLFetchingError(f"cannot read report resource {path}: {exc.strerror}") from None
            mime = {".css": "text/css", ".ttf": "font/ttf"}.get(path.suffix, "application/octet-stream")
            return URLFetcherResponse(url, body=data, headers={"Content-Type": mime})

    return ReportFetcher(allowed_protocols=("file",), fail_on_errors=True)


class _ProblemCollector(logging.Handler):
    """Collects WeasyPrint warnings: a font that did not load must fail the render, not fall back."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.problems: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if not message.startswith(FONTTOOLS_NOTICE):
            self.problems.append(message)


@contextmanager
def _collect_problems() -> Iterator[_ProblemCollector]:
    logger = logging.getLogger("weasyprint")
    handler = _ProblemCollector()
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _import_weasyprint():  # noqa: ANN202 - the weasyprint module
    """Import WeasyPrint without its notice about libharfbuzz-subset: we subset with fontTools on purpose."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="HarfBuzz-Subset", category=DeprecationWarning)
        import weasyprint
    return weasyprint


def render_report_bytes(results: Results, attachments: dict[str, bytes] | None = None) -> bytes:
    """Render the report and return the PDF bytes (same inputs, same bytes)."""
    weasyprint = _import_weasyprint()
    from weasyprint.urls import FatalURLFetchingError

    files = report_attachments(results, attachments)
    root = templates_dir()
    for needed in (REPORT_TEMPLATE, "report.css"):
        if not (root / needed).is_file():
            raise RenderError(f"report template missing: {root / needed}")
    html = render_html(results, files)
    moment = results.artifact.checked_at.astimezone(timezone.utc).replace(tzinfo=None)
    fetcher = _fetcher(root, files)
    pdf_attachments = [
        weasyprint.Attachment(
            url=ATTACHMENT_SCHEME + name,
            url_fetcher=fetcher,
            name=name,
            description=ATTACHMENT_DESCRIPTIONS.get(name, name),
            created=moment,
            modified=moment,
            relationship=ATTACHMENT_RELATIONSHIPS.get(name, "Supplement"),
        )
        for name in sorted(files)
    ]
    identifier = build_identifier(files)
    try:
        with _collect_problems() as collector, deterministic_fonts(results.artifact.checked_at):
            document = weasyprint.HTML(string=html, base_url=str(root) + os.sep, url_fetcher=fetcher)
            pdf = document.write_pdf(
                pdf_variant=PDF_VARIANT,
                attachments=pdf_attachments,
                pdf_identifier=identifier,
                custom_metadata=False,
            )
    except FatalURLFetchingError as exc:
        raise RenderError(str(exc)) from None
    if collector.problems:
        raise RenderError(f"report rendering problem: {collector.problems[0]}")
    assert isinstance(pdf, bytes)
    return pdf


def build_identifier(files: dict[str, bytes]) -> bytes:
    """The PDF /ID: 32 hex digits of the content-derived report identifier."""
    return report_identifier(files)[:32].encode("ascii")


def render_report(results: Results, attachments: dict[str, bytes] | None, out_path: str | os.PathLike[str]) -> bytes:
    """Render and write the report atomically to ``out_path``; returns the bytes written."""
    pdf = render_report_bytes(results, attachments)
    write_bytes_atomic(out_path, pdf)
    return pdf


def renderer_version() -> str:
    """The renderer on this machine, as WeasyPrint names itself in a PDF's /Producer (e.g. ``WeasyPrint 70.0``)."""
    return f"WeasyPrint {_import_weasyprint().__version__}"


def recorded_renderer(rendered: bytes) -> str:
    """The renderer named in the rendered revision's /Producer, or a phrase saying none is named."""
    import io

    import pikepdf

    try:
        with pikepdf.open(io.BytesIO(rendered)) as pdf:
            producer = pdf.docinfo.get("/Producer")
            return str(producer) if producer is not None else "an unnamed renderer (no /Producer)"
    except pikepdf.PdfError:
        return "an unreadable renderer name"
