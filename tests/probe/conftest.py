"""Fixtures of the probe tests: one signed delivery of a small trained model per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "attest"))  # tests_cli: the CLI runner with the real error plumbing

from probe_helpers import build_delivery  # noqa: E402


@pytest.fixture(scope="session")
def delivery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_delivery(tmp_path_factory.mktemp("probe-delivery"))
