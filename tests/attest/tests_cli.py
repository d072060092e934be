"""Running a command group in-process through the real error plumbing (one line, exit code)."""

from __future__ import annotations

from dataclasses import dataclass

import click
from click.testing import CliRunner

from uc_attest.cli.common import run_group


@dataclass
class CliResult:
    rc: int
    out: str
    err: str


def run_cli(group: click.Group, *args: object, env: dict[str, str] | None = None, input: str | None = None) -> CliResult:
    runner = CliRunner()
    with runner.isolation(input=input, env=env) as (out, err, _):
        try:
            run_group(group, [str(a) for a in args])
            rc = 0
        except SystemExit as exc:
            rc = int(exc.code or 0)
        return CliResult(rc, out.getvalue().decode(), err.getvalue().decode())
