"""The attested file digests are split out of the verified statement once per check, and compared by one diff."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from support.cli import run_cli

import uc_attest._internal.attest.subjects as subjects
from uc_attest._internal.attest.keys import write_keypair
from uc_attest._internal.cli.attest_check import check_command
from uc_attest._internal.cli.attest_sign import sign_command
from uc_attest._internal.digests import diff_files
from uc_attest._internal.pack.export import export_pack

pytestmark = pytest.mark.slow

ATTEST = click.Group("attest", commands=[sign_command, check_command])


def test_one_split_per_check_with_deployed_and_oms(tiny_pack: Path, tiny_model_dir: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    key, pub, _ = write_keypair(tmp_path / "vendor")
    signed = run_cli(ATTEST, "sign", tiny_pack, "--key", key, "--baseline", tiny_model_dir, "--seq-len", "16", "--max-windows", "2",
                     "--oms", "--quiet")  # fmt: skip
    assert signed.rc == 0, signed.err
    served = tmp_path / "served"
    export_pack(tiny_pack, served)
    calls: list[object] = []
    real = subjects.split_subjects
    monkeypatch.setattr(subjects, "split_subjects", lambda statement: calls.append(statement) or real(statement))
    checked = run_cli(ATTEST, "check", tiny_pack, "--key", pub, "--deployed", served, "--quiet")
    assert checked.rc == 0, checked.out
    assert "PASS  OpenSSF model signature" in checked.out and "PASS  The deployed model directory" in checked.out
    assert len(calls) == 1


def test_the_one_diff() -> None:
    diff = diff_files({"a": "1", "b": "2", "c": "3"}, {"b": "2", "c": "4", "d": "5"})
    assert (diff.missing, diff.extra, diff.differ, diff.equal) == (["a"], ["d"], ["c"], False)
    assert diff_files({"a": "1"}, {"a": "1"}).equal
