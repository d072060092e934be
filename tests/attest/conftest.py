"""Fixtures of the attestation tests: CLI runners for ``attest keygen|sign`` and ``uc``."""

from __future__ import annotations

import functools
from collections.abc import Callable

import click
import pytest
from support.cli import CliResult, run_cli

from uc_attest._internal.cli.attest_keys import keygen_command
from uc_attest._internal.cli.attest_sign import sign_command


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
    from uc_attest._internal.cli.uc import uc_group

    return cli_runner(uc_group)
