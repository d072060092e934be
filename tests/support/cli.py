"""``run_cli``: the one way the tests run ``uc`` or ``attest`` in process, through the real error plumbing."""

from __future__ import annotations

from typing import NamedTuple

import click
from click.testing import CliRunner

from uc_attest._internal.cli.common import run_group


class CliResult(NamedTuple):
    """Exit code, stdout and stderr; unpacks as ``rc, out, err``."""

    rc: int
    out: str
    err: str


def _group(group: click.Group | str) -> click.Group:
    if not isinstance(group, str):
        return group
    if group == "attest":
        from uc_attest._internal.cli.attest import attest_group

        return attest_group
    if group == "uc":
        from uc_attest._internal.cli.uc import uc_group

        return uc_group
    raise ValueError(f"no command group {group!r}")


def run_cli(group: click.Group | str, *args: object, env: dict[str, str | None] | None = None, input: str | None = None) -> CliResult:
    """Run ``group`` ("uc", "attest" or a click group) with ``args`` as the entry point does: exit code, stdout, stderr.

    ``env`` is set for the call only (a value of None unsets the variable) and restored afterwards.
    """
    runner = CliRunner()
    with runner.isolation(input=input, env=env) as (out, err, _):
        try:
            run_group(_group(group), [str(a) for a in args])
            rc = 0
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        return CliResult(rc, out.getvalue().decode(errors="replace"), err.getvalue().decode(errors="replace"))


def assert_one_line_error(rc: int, err: str, codes: tuple[int, ...] = (1, 2)) -> None:
    """The error contract: an expected exit code and one ``error: ...`` line (then at most a ``hint: ...`` line), never a traceback."""
    assert rc in codes, (rc, err)
    assert "Traceback" not in err and "internal error" not in err, err
    lines = err.strip().splitlines()
    assert 1 <= len(lines) <= 2 and lines[0].startswith("error: "), err
    assert len(lines) == 1 or lines[1].startswith("hint: "), err
