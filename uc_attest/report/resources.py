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
        # Without an __init__.py the folder is a namespace package, whose files()
        # is a MultiplexedPath: ask for a real path of one known file instead.
        marker = importlib.resources.files("uc_attest.templates").joinpath(REPORT_TEMPLATE)
        with importlib.resources.as_file(marker) as path:
            if path.is_file():
                return path.parent
    except (ModuleNotFoundError, TypeError, FileNotFoundError, NotADirectoryError):
        pass
    return Path(__file__).resolve().parents[2] / "templates"
