"""The wheel must carry every subpackage plus templates/ and policies/."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "uc_attest").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert found <= listed, f"add to pyproject packages: {sorted(found - listed)}"
    assert {"uc_attest.templates", "uc_attest.policies"} <= listed


def test_shipped_resources_resolve() -> None:
    from uc_attest.policy.resources import policies_dir
    from uc_attest.report.resources import templates_dir

    assert (policies_dir() / "default.toml").is_file()
    assert (templates_dir() / "report.html.j2").is_file()
