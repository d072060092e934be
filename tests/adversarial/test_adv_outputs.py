"""Outputs are checked before the work starts and written all together or not at all, for every command.

``/proc`` stands for an unwritable directory (the suite may run as root, for
whom permission bits do not stop a write; nobody can create a file in /proc).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from support.cli import assert_one_line_error, run_cli

from uc_attest._internal.errors import UsageError
from uc_attest._internal.outputs import Output, ensure_outputs_writable, write_all

pytestmark = pytest.mark.slow  # the shared signed delivery (tests/conftest.py)

UNWRITABLE = Path("/proc")


def _check_args(site: Any, **outs: Path) -> list[object]:
    args: list[object] = ["check", site.pack, "--bundle", site.bundle, "--tokens", site.tokens, "--key", site.key, "--quiet"]
    for option, path in outs.items():
        args += [f"--{option}", path]
    return args


def test_check_refuses_an_unwritable_report_before_checking_and_writes_no_json(site: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uc_attest._internal.check.run as pipeline

    calls: list[object] = []
    real = pipeline.run_check
    monkeypatch.setattr(pipeline, "run_check", lambda inputs: calls.append(inputs) or real(inputs))
    ok = tmp_path / "ok.json"
    for bad in (UNWRITABLE / "r.pdf", UNWRITABLE, tmp_path):  # unwritable place, and an existing directory
        rc, _out, err = run_cli("attest", *_check_args(site, json=ok, report=bad))
        assert_one_line_error(rc, err, (2,))
    assert not calls and not ok.exists()


def test_check_writes_neither_output_when_the_report_cannot_be_rendered(site: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uc_attest._internal.report.render as report

    def fail(*_args: object, **_kwargs: object) -> bytes:
        raise UsageError("cannot render the report: simulated")

    monkeypatch.setattr(report, "render_report_bytes", fail)
    ok, pdf = tmp_path / "ok.json", tmp_path / "r.pdf"
    rc, _out, err = run_cli("attest", *_check_args(site, json=ok, report=pdf))
    assert_one_line_error(rc, err, (2,))
    assert not ok.exists() and not pdf.exists()


def test_write_all_restores_earlier_outputs_when_a_later_one_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = tmp_path / "a.json", tmp_path / "b.pdf"
    first.write_bytes(b"old results")
    real_replace = os.replace
    calls = {"n": 0}

    def flaky(src: Any, dst: Any) -> None:
        calls["n"] += 1
        if Path(dst) == second:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(UsageError, match="no output was written"):
        write_all([Output(first, b"new results"), Output(second, b"%PDF")])
    monkeypatch.setattr(os, "replace", real_replace)
    assert first.read_bytes() == b"old results" and not second.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]  # no temporary or backup file left
    write_all([Output(first, b"new results"), Output(second, b"%PDF")])
    assert first.read_bytes() == b"new results" and second.read_bytes() == b"%PDF"


def test_ensure_outputs_writable_refuses_what_cannot_be_written(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot write"):
        ensure_outputs_writable([UNWRITABLE / "uc-attest-x"])
    with pytest.raises(UsageError, match="does not exist"):
        ensure_outputs_writable([tmp_path / "missing" / "x"])
    with pytest.raises(UsageError, match="is a directory"):
        ensure_outputs_writable([tmp_path])
    with pytest.raises(UsageError, match="same file"):
        ensure_outputs_writable([tmp_path / "x", tmp_path / "." / "x"])
    with pytest.raises(UsageError, match="overwrite an input"):
        ensure_outputs_writable([tmp_path / "x"], [tmp_path / "x"])
    (tmp_path / "exists").write_text("")
    with pytest.raises(UsageError, match="already exists"):
        ensure_outputs_writable([tmp_path / "exists"], overwrite=False)
    ensure_outputs_writable([tmp_path / "new", tmp_path / "exists"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists"]  # the probe leaves nothing behind


def test_sign_refuses_an_unwritable_output_before_measuring(site: Any, vendor_key: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uc_attest._internal.attest.acceptance as acceptance
    from uc_attest._internal.attest.keys import private_key_pem

    called: list[object] = []
    monkeypatch.setattr(acceptance, "_measure", lambda *a, **k: called.append(a) or (_ for _ in ()).throw(AssertionError("measured")))
    key = tmp_path / "vendor.key"
    key.write_bytes(private_key_pem(vendor_key, None))
    key.chmod(0o600)
    tokens_ok = tmp_path / "t.safetensors"
    rc, _out, err = run_cli("attest", "sign", site.pack, "--key", key, "--output", UNWRITABLE / "b.json", "--tokens-out", tokens_ok, "--quiet")
    assert_one_line_error(rc, err, (2,))
    rc, _out, err = run_cli("attest", "sign", site.pack, "--key", key, "--output", tmp_path / "b.json", "--tokens-out", UNWRITABLE / "t", "--quiet")
    assert_one_line_error(rc, err, (2,))
    assert not called and not tokens_ok.exists() and not (tmp_path / "b.json").exists()


def test_report_keygen_and_compress_refuse_unwritable_outputs_at_once(site: Any, delivery_root: tuple[Path, Any], tmp_path: Path) -> None:
    results = tmp_path / "r.json"
    rc, _out, _err = run_cli("attest", *_check_args(site, json=results))
    assert rc == 0 and results.exists()
    rc, _out, err = run_cli("attest", "report", results, "-o", UNWRITABLE / "r.pdf")
    assert_one_line_error(rc, err, (2,))
    rc, _out, err = run_cli("attest", "keygen", "-o", UNWRITABLE / "k")
    assert_one_line_error(rc, err, (2,))
    rc, _out, err = run_cli("uc", "compress", delivery_root[0] / "model", "-o", UNWRITABLE / "p", "--method", "datafree")
    assert_one_line_error(rc, err, (2,))
