"""Where the repository and the tests live, and how a child Python process finds ``support`` and ``uc_attest``."""

from __future__ import annotations

import os
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment with the repository and tests/ first on PYTHONPATH (what pyproject gives pytest)."""
    env = {**os.environ, **(extra or {})}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), str(TESTS), env.get("PYTHONPATH", "")) if p)
    return env
