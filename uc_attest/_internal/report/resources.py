"""Find the report templates and fonts, installed or in a source checkout.

``templates/`` sits at the repository root (easy to read and restyle); in a
wheel it is mapped to the package ``uc_attest.templates`` (``uc_attest._internal.resources``
finds either). Fonts ship inside it (templates/fonts/) so the report looks, and
hashes, the same everywhere.
"""

from __future__ import annotations

from pathlib import Path

from ..resources import shipped_folder

REPORT_TEMPLATE = "report.html.j2"


def templates_dir() -> Path:
    """Return the folder holding report.html.j2, report.css and fonts/."""
    return shipped_folder("templates", REPORT_TEMPLATE)
