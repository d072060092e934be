"""Find the report templates and fonts, installed or in a source checkout.

``templates/`` sits at the repository root (easy to read and restyle); in a
wheel it is mapped to the package ``uc_attest.templates``. Fonts ship inside
it (templates/fonts/) so the report looks, and hashes, the same everywhere.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

REPORT_TEMPLATE = "report.html.j2"


def templates_dir() -> Path:
    """Return the folder holding report.html.j2, report.css and fonts/."""
    try:
        packaged = importlib.resources.files("uc_attest.templates")
        candidate = Path(str(packaged))
        if (candidate / REPORT_TEMPLATE).is_file():
            return candidate
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parents[2] / "templates"
