"""Find the policies shipped with uc_attest, installed or in a source checkout.

The ``policies/`` folder sits at the repository root so that people can read
and copy it; in a wheel it is mapped to the package ``uc_attest.policies``.
``uc_attest._internal.resources.shipped_folder`` hides which of the two layouts is in use.
"""

from __future__ import annotations

from pathlib import Path

from ..resources import shipped_folder

DEFAULT_POLICY_NAME = "default"


def policies_dir() -> Path:
    """Return the folder that holds the shipped ``*.toml`` policies."""
    return shipped_folder("policies", f"{DEFAULT_POLICY_NAME}.toml")


def shipped_policy_names() -> list[str]:
    """Names (file stems) of the shipped policies, sorted."""
    return sorted(p.stem for p in policies_dir().glob("*.toml"))


def shipped_policy_path(name: str) -> Path:
    """Path of the shipped policy ``name`` (e.g. ``strict``)."""
    return policies_dir() / f"{name}.toml"
