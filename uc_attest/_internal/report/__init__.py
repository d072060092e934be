"""The PDF audit report: PDF/A-3b, reproducible, with its evidence embedded.

Importing this package is cheap; WeasyPrint is imported only when rendering.
"""

from .names import BUNDLE_ATTACHMENT, POLICY_ATTACHMENT, RESULTS_ATTACHMENT, VSA_ATTACHMENT
from .render import (
    RenderError,
    render_html,
    render_report,
    render_report_bytes,
    report_attachments,
)

__all__ = [
    "BUNDLE_ATTACHMENT",
    "POLICY_ATTACHMENT",
    "RESULTS_ATTACHMENT",
    "VSA_ATTACHMENT",
    "RenderError",
    "render_html",
    "render_report",
    "render_report_bytes",
    "report_attachments",
]
