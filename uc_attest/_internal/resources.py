"""Find a folder uc_attest ships, whether installed from a wheel or run from a source checkout.

``policies/`` and ``templates/`` sit at the repository root so that people can
read, copy and restyle them; a wheel maps them to the packages
``uc_attest.policies`` and ``uc_attest.templates`` (pyproject.toml). This one
resolver hides which of the two layouts is in use, for both.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path


def shipped_folder(package: str, marker: str) -> Path:
    """The folder of ``uc_attest.<package>`` that holds the file ``marker``: installed, else the checkout's ``<package>/``."""
    try:
        # Without an __init__.py the folder is a namespace package, whose files()
        # is a MultiplexedPath: ask for a real path of one known file instead.
        path_of_marker = importlib.resources.files(f"uc_attest.{package}").joinpath(marker)
        with importlib.resources.as_file(path_of_marker) as path:
            if path.is_file():
                return path.parent
    except (ModuleNotFoundError, TypeError, FileNotFoundError, NotADirectoryError):
        pass
    return Path(__file__).resolve().parents[__name__.count(".")] / package
