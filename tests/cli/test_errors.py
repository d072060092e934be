"""The error contract of both command groups: line 1 and the exit code; an optional ``hint:`` line; ``--debug``."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.cli import assert_one_line_error, run_cli

import uc_attest._internal.pack.verify


def _boom(*_args: object, **_kwargs: object) -> None:
    raise RuntimeError("boom")


@pytest.mark.parametrize("group", ["uc", "attest"])
def test_help_of_both_groups_documents_debug(group: str) -> None:
    result = run_cli(group, "--help")
    assert result.rc == 0 and "--debug" in result.out


def test_an_unexpected_error_is_one_line_and_a_hint_that_names_debug(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("UC_ATTEST_DEBUG", raising=False)
    monkeypatch.setattr(uc_attest._internal.pack.verify, "verify_pack", _boom)
    rc, _out, err = run_cli("uc", "verify", tmp_path)
    assert rc == 2
    assert err.splitlines() == ["error: internal error: RuntimeError: boom", "hint: run again with --debug (or UC_ATTEST_DEBUG=1) for the traceback"]


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_debug_shows_the_exception_instead(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, how: str) -> None:
    monkeypatch.setattr(uc_attest._internal.pack.verify, "verify_pack", _boom)
    if how == "flag":
        monkeypatch.delenv("UC_ATTEST_DEBUG", raising=False)
        args: tuple[object, ...] = ("--debug", "verify", tmp_path)
    else:
        monkeypatch.setenv("UC_ATTEST_DEBUG", "1")
        args = ("verify", tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        run_cli("uc", *args)


def test_debug_after_the_command_is_the_commands_argument_not_the_groups(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("UC_ATTEST_DEBUG", raising=False)
    monkeypatch.setattr(uc_attest._internal.pack.verify, "verify_pack", _boom)
    rc, _out, err = run_cli("uc", "verify", tmp_path, "--debug")  # uc verify has no --debug: a usage error, no traceback
    assert_one_line_error(rc, err, (2,))
    assert "--debug" in err


def test_a_typed_error_keeps_line_one_and_adds_its_hint(tmp_path: Path) -> None:
    from uc_attest._internal.attest.keys import write_keypair

    key, _, _ = write_keypair(tmp_path / "vendor")
    key.chmod(0o644)
    (tmp_path / "pack").mkdir()
    rc, _out, err = run_cli("attest", "sign", tmp_path / "pack", "--key", key, "--quiet", env={"UC_ATTEST_KEY_PASSPHRASE": None})
    assert_one_line_error(rc, err, (2,))
    first, hint = err.splitlines()
    assert "accessible by group or others (mode 0644)" in first and "chmod" not in first
    assert hint == f"hint: run chmod 600 {key}, or pass --allow-open-key-file to use it anyway"
