"""Fixtures of the attestation tests: keys, a tiny random model and its pack, a CLI runner."""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable
from pathlib import Path

import click
import pytest
from attest_helpers import TINY_TEXT, build_tiny_model, build_tiny_pack
from tests_cli import CliResult, run_cli

from uc_attest.attest.keys import Algorithm, generate_private_key
from uc_attest.cli.attest_keys import keygen_command
from uc_attest.cli.attest_sign import sign_command


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_pack_master(tiny_model_dir: Path) -> Path:
    return build_tiny_pack(tiny_model_dir, tiny_model_dir.parent / "pack")


@pytest.fixture()
def tiny_pack(tiny_pack_master: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny pack (tests may tamper with it)."""
    dest = tmp_path / "pack"
    shutil.copytree(tiny_pack_master, dest)
    return dest


@pytest.fixture()
def eval_text(tmp_path: Path) -> Path:
    path = tmp_path / "eval.txt"
    path.write_text(TINY_TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def p256_key():  # type: ignore[no-untyped-def]
    return generate_private_key(Algorithm.P256)


@pytest.fixture(scope="session")
def ed25519_key():  # type: ignore[no-untyped-def]
    return generate_private_key(Algorithm.ED25519)


def cli_runner(group: click.Group) -> Callable[..., CliResult]:
    """Run a command group through the real error plumbing (one line, exit code)."""
    return functools.partial(run_cli, group)


@pytest.fixture()
def attest_cli(monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    """Run ``attest keygen|sign ...`` through the real error plumbing (one line, exit code)."""
    group = click.Group("attest")
    group.add_command(keygen_command)
    group.add_command(sign_command)
    monkeypatch.delenv("UC_ATTEST_KEY_PASSPHRASE", raising=False)
    return cli_runner(group)


@pytest.fixture()
def uc_cli() -> Callable[..., CliResult]:
    """Run ``uc ...`` the same way."""
    from uc_attest.cli.uc import uc_group

    return cli_runner(uc_group)
