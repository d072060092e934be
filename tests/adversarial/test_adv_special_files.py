"""Special files and oversized files in place of what the tool reads: refused at once, never read.

A FIFO without a writer blocks a plain ``open()`` forever, a device returns
endless bytes, and a sparse file can claim gigabytes that the reader would
allocate. Every case here runs the real commands in one child process under a
timeout, so that a reader which blocks fails the test instead of hanging the
suite: a pack member gives exit 1 (the pack was tampered with), an input the
user named gives exit 2 (it cannot be used), each with a one-line error.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from support.paths import REPO, child_env

from uc_attest._internal.pack.manifest import MANIFEST_NAME
from uc_attest._internal.pack.reader import open_pack, read_pack_file
from uc_attest._internal.safe_io import NotRegularFileError, read_regular_file, sha256_regular_file

pytestmark = pytest.mark.slow  # the shared signed delivery (tests/conftest.py)

CHILD = r"""
import json, sys
from support.cli import run_cli
cases = json.loads(sys.argv[1])
out = {}
for name, (group, args) in cases.items():
    rc, _stdout, err = run_cli(group, *args)
    out[name] = [rc, err]
    print(json.dumps({name: out[name]}), flush=True)
"""


def _run_cases(cases: dict[str, tuple[str, list[str]]], timeout: int = 240) -> dict[str, tuple[int, str]]:
    """Run every case in one child; a case that blocks makes the child time out and the test fail."""
    env = child_env()
    try:
        proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cases)],
                              capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        done = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        pytest.fail(f"a command blocked on a special file; finished before the hang: {done!r}")
    results: dict[str, tuple[int, str]] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            results.update({k: (v[0], v[1]) for k, v in json.loads(line).items()})
    assert set(results) == set(cases), proc.stderr[-2000:]
    return results


def _fifo(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path)


def _one_line(rc: int, err: str, code: int) -> None:
    assert rc == code, (rc, err)
    assert "Traceback" not in err and "internal error" not in err, err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("member", ["codec", "tokenizer.json", MANIFEST_NAME, "config.json"])
def test_a_fifo_pack_member_fails_verify_and_check_with_exit_1(site: Any, tmp_path: Path, member: str) -> None:
    if member == "codec":
        member = next(f.path for f in open_pack(site.pack).manifest.files if f.role == "codec")
    _fifo(site.pack / member)
    cases = {
        "verify": ("uc", ["verify", str(site.pack), "--quiet"]),
        "check": ("attest", ["check", str(site.pack), "--bundle", str(site.bundle), "--tokens", str(site.tokens),
                             "--key", str(site.key), "--json", str(tmp_path / "r.json"), "--quiet"]),  # fmt: skip
    }
    results = _run_cases(cases)
    rc, err = results["verify"]
    assert rc == 1 and "Traceback" not in err, (rc, err)
    rc, err = results["check"]
    assert rc == 1 and "Traceback" not in err, (rc, err)
    verdict = json.loads((tmp_path / "r.json").read_bytes()) if (tmp_path / "r.json").exists() else None
    assert verdict is None or verdict["verdict"] == "FAIL"


def test_special_files_named_by_the_user_are_refused_with_exit_2(site: Any, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    sock_path = tmp_path / "sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    check = ["check", str(site.pack), "--bundle", str(site.bundle), "--tokens", str(site.tokens), "--key", str(site.key),
             "--json", str(tmp_path / "r.json"), "--quiet"]  # fmt: skip

    def with_(option: str, value: Path) -> list[str]:
        args = list(check)
        args[args.index(option) + 1] = str(value)
        return args

    cases = {
        "bundle fifo": ("attest", with_("--bundle", fifo)),
        "bundle device": ("attest", with_("--bundle", Path("/dev/zero"))),
        "key fifo": ("attest", with_("--key", fifo)),
        "policy fifo": ("attest", [*check, "--policy", str(fifo)]),
        "policy socket": ("attest", [*check, "--policy", str(sock_path)]),
        "eval tokens fifo": ("uc", ["eval", str(site.pack), "--tokens", str(fifo)]),
        "eval text fifo": ("uc", ["eval", str(site.pack), "--text", str(fifo)]),
        "report fifo": ("attest", ["verify-report", str(fifo), "--key", str(site.key)]),
    }
    try:
        results = _run_cases(cases)
    finally:
        server.close()
    for name, (rc, err) in results.items():
        assert rc == 2, (name, rc, err)
        assert "Traceback" not in err and "internal error" not in err, (name, err)
        assert len(err.strip().splitlines()) == 1, (name, err)


def test_a_fifo_token_file_fails_the_check_without_blocking(site: Any, tmp_path: Path) -> None:
    _fifo(site.tokens)
    results = _run_cases({"check": ("attest", ["check", str(site.pack), "--bundle", str(site.bundle), "--tokens", str(site.tokens),
                                               "--key", str(site.key), "--json", str(tmp_path / "r.json"), "--quiet"])})  # fmt: skip
    rc, err = results["check"]
    assert rc == 1, (rc, err)
    checks = {c["name"]: c for c in json.loads((tmp_path / "r.json").read_bytes())["checks"]}
    assert checks["eval_tokens"]["status"] == "FAIL" and "FIFO" in checks["eval_tokens"]["summary"]


def test_a_sparse_pack_member_is_refused_before_it_is_read(site: Any) -> None:
    """2 GiB on disk, 13 KB in the manifest: refused from fstat, nothing allocated (peak memory stays small)."""
    pack = open_pack(site.pack)
    entry = pack.manifest.file("tokenizer.json")
    with open(site.pack / "tokenizer.json", "r+b") as handle:
        handle.truncate(2 << 30)
    tracemalloc.start()
    try:
        data, problems = read_pack_file(pack, entry)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert data is None and problems == [f"tokenizer.json: size {2 << 30} differs from the manifest's {entry.size}"]
    assert peak < 1 << 20, peak


def test_a_sparse_token_file_is_refused_by_the_signed_token_count(site: Any, tmp_path: Path) -> None:
    from support.delivery import check as run_check

    with open(site.tokens, "r+b") as handle:
        handle.truncate(2 << 30)
    tracemalloc.start()
    try:
        rc, _out, _err, results = run_check(site, tmp_path / "r.json")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rc == 1 and results is not None
    tokens = next(c for c in results["checks"] if c["name"] == "eval_tokens")
    assert tokens["status"] == "FAIL" and "allowed" in tokens["summary"], tokens
    assert peak < 256 << 20, peak


def test_helper_refuses_special_files_and_streams_regular_ones(tmp_path: Path) -> None:
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    with pytest.raises(NotRegularFileError, match="FIFO"):
        read_regular_file(fifo)
    with pytest.raises(NotRegularFileError, match="device"):
        read_regular_file("/dev/null", follow_symlinks=True)
    with pytest.raises(NotRegularFileError, match="directory"):
        sha256_regular_file(tmp_path)
    regular = tmp_path / "r"
    regular.write_bytes(b"abc")
    link = tmp_path / "l"
    link.symlink_to(regular)
    with pytest.raises(OSError, match="symlink"):
        read_regular_file(link)
    assert bytes(read_regular_file(link, follow_symlinks=True)) == b"abc"
    assert sha256_regular_file(regular) == (3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
