"""Session fixtures every folder shares: one signed tiny delivery per run, copied for every test that tampers with it.

Building a delivery (train a tokenizer, compress, measure, sign) is the slowest
set-up in the fast suite; before these fixtures each folder built its own.
Tests that use them are marked ``slow`` (``make test-fast`` leaves them out).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from support.delivery import build_delivery, copy_delivery
from support.models import TEXT

from uc_attest._internal.attest.keys import Algorithm, generate_private_key


@pytest.fixture(scope="session")
def delivery_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A signed tiny delivery (vendor A) and its private key; never modified: tests work on copies (``site``)."""
    root = tmp_path_factory.mktemp("delivery-a") / "d"
    _delivery, key = build_delivery(root, seed=0)
    return root, key


@pytest.fixture(scope="session")
def other_delivery_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A second, independent delivery (another model, another vendor key)."""
    root = tmp_path_factory.mktemp("delivery-b") / "d"
    _delivery, key = build_delivery(root, seed=1)
    return root, key


@pytest.fixture
def site(delivery_root: tuple[Path, Any], tmp_path: Path) -> Any:
    """A private copy of delivery A that a test may tamper with (``site.pack.parent`` is its folder)."""
    return copy_delivery(delivery_root[0], tmp_path / "site")


@pytest.fixture
def vendor_key(delivery_root: tuple[Path, Any]) -> Any:
    return delivery_root[1]


@pytest.fixture(scope="session")
def tiny_model_dir(delivery_root: tuple[Path, object]) -> Path:
    """The shared delivery's tiny tokenized model (read only)."""
    return delivery_root[0] / "model"


@pytest.fixture(scope="session")
def tiny_pack_master(delivery_root: tuple[Path, object]) -> Path:
    """The shared delivery's pack (read only; signing writes beside a pack, never into it)."""
    return delivery_root[0] / "pack"


@pytest.fixture()
def tiny_pack(tiny_pack_master: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny pack (tests may tamper with it)."""
    dest = tmp_path / "pack"
    shutil.copytree(tiny_pack_master, dest)
    return dest


@pytest.fixture()
def eval_text(tmp_path: Path) -> Path:
    path = tmp_path / "eval.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def p256_key():  # type: ignore[no-untyped-def]
    return generate_private_key(Algorithm.P256)


@pytest.fixture(scope="session")
def ed25519_key():  # type: ignore[no-untyped-def]
    return generate_private_key(Algorithm.ED25519)
