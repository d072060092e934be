"""Find the policies shipped with uc_attest, installed or in a source checkout.

The ``policies/`` folder sits at the repository root so that people can read
and copy it; in a wheel it is mapped to the package ``uc_attest.policies``.
This resolver hides which of the two layouts is in use.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

DEFAULT_POLICY_NAME = "default"


def policies_dir() -> Path:
    """Return the folder that holds the shipped ``*.toml`` policies."""
    try:
        # Without an __init__.py the folder is a namespace package, whose files()
        # is a MultiplexedPath: ask for a real path of one known file instead.
        marker = importlib.resources.files("uc_attest.policies").joinpath(f"{DEFAULT_POLICY_NAME}.toml")
        with importlib.resources.as_file(marker) as path:
            if path.is_file():
                return path.parent
    except (ModuleNotFoundError, TypeError, FileNotFoundError, NotADirectoryError):
        pass
    return Path(__file__).resolve().parents[2] / "policies"


def shipped_policy_names() -> list[str]:
    """Names (file stems) of the shipped policies, sorted."""
    return sorted(p.stem for p in policies_dir().glob("*.toml"))


def shipped_policy_path(name: str) -> Path:
    """Path of the shipped policy ``name`` (e.g. ``strict``)."""
    return policies_dir() / f"{name}.toml"
