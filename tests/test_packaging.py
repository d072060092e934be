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
    from uc_attest._internal.policy.resources import policies_dir
    from uc_attest._internal.report.resources import templates_dir

    assert (policies_dir() / "default.toml").is_file()
    assert (templates_dir() / "report.html.j2").is_file()


def test_torch_is_a_range_for_users_and_pinned_only_by_the_set_up_step() -> None:
    """pip install into a GPU environment must keep the user's CUDA torch; CI and make venv still get the tested CPU wheel."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    [torch] = [d for d in deps if d.split(">")[0].split("=")[0].strip() == "torch"]
    assert torch.startswith("torch>=") and "==" not in torch and "<" not in torch
    assert "pip install -q torch==2.13.0" in (ROOT / "Makefile").read_text()
    assert "wheel_check.sh" in (ROOT / ".ci" / "run").read_text()
