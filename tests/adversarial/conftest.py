"""Fixtures of the adversarial suite: signed tiny deliveries built once per session, copied per test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from adversarial_helpers import build_delivery, copy_delivery


@pytest.fixture(scope="session")
def delivery_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A signed tiny delivery (vendor A); never modified: tests work on copies."""
    root = tmp_path_factory.mktemp("adv-delivery-a") / "d"
    _delivery, key = build_delivery(root, seed=0)
    return root, key


@pytest.fixture(scope="session")
def other_delivery_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A second, independent delivery (another model, another vendor key)."""
    root = tmp_path_factory.mktemp("adv-delivery-b") / "d"
    _delivery, key = build_delivery(root, seed=1)
    return root, key


@pytest.fixture
def site(delivery_root: tuple[Path, Any], tmp_path: Path) -> Any:
    """A private copy of delivery A that a test may tamper with."""
    return copy_delivery(delivery_root[0], tmp_path / "site")


@pytest.fixture
def vendor_key(delivery_root: tuple[Path, Any]) -> Any:
    return delivery_root[1]
