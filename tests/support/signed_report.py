"""The customer-signed report the report tests verify and forge: running ``attest`` with an empty key passphrase."""

from __future__ import annotations

from pathlib import Path

from support.cli import CliResult, run_cli

ENV = {"UC_ATTEST_KEY_PASSPHRASE": ""}


def attest(*args: object) -> CliResult:
    return run_cli("attest", *args, env=ENV)


def verify(site: Path, report: Path | None = None, customer: Path | None = None) -> tuple[int, str, str]:
    return attest("verify-report", report or site / "report.pdf", "--key", site / "vendor.pub", "--customer-key", customer or site / "customer.pub")
