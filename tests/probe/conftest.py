"""Fixtures of the probe tests: one signed delivery of a small trained model per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.probe import build_delivery


@pytest.fixture(scope="session")
def delivery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_delivery(tmp_path_factory.mktemp("probe-delivery"))
