"""Faults: a compress, sign or check killed at any moment leaves no partial file at its final path,
and a full disk gives a one-line error.

Kills are real SIGKILLs of a child process at seeded random moments during the
work (after its imports); afterwards every final path is either absent or holds
a complete artifact that verifies. Temporary siblings (``.NAME.*.partial`` /
``.NAME.*.tmp``) may remain: they are never at a final path and never read.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from support.cli import assert_one_line_error, run_cli
from support.delivery import copy_delivery
from support.models import build_tokenized_model
from support.paths import REPO, child_env

pytestmark = pytest.mark.slow  # the shared signed delivery (tests/conftest.py)

CHILD = r"""
import sys, time
from pathlib import Path
from support.cli import run_cli
from support.delivery import sign
from uc_attest._internal.compress.options import CompressOptions
from uc_attest._internal.compress.pipeline import compress_model
import uc_attest._internal.attest.acceptance, uc_attest._internal.check.run, uc_attest._internal.report  # imports before the clock starts
what, args = sys.argv[1], sys.argv[2:]
print("ready", flush=True)
t0 = time.perf_counter()
if what == "compress":
    compress_model(Path(args[0]), Path(args[1]), CompressOptions(method="datafree", bits=4, block_size=32, shard_bytes=64 << 10), progress=False)
elif what == "sign":
    from uc_attest._internal.attest.keys import load_private_key
    sign(Path(args[0]), load_private_key(args[1], None), Path(args[2]), name="killed")
elif what == "check":
    rc, out, err = run_cli("attest", "check", args[0], "--bundle", args[1], "--tokens", args[2], "--key", args[3],
                             "--json", args[4], "--report", args[5], "--quiet")
    assert rc == 0, out + err
print("done %.3f" % (time.perf_counter() - t0), flush=True)
"""


def _spawn(what: str, *args: object) -> subprocess.Popen[str]:
    env = child_env({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    return subprocess.Popen([sys.executable, "-c", CHILD, what, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO, env=env)  # fmt: skip


def _wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", (line, proc.stderr.read() if proc.stderr else "")


def _run_to_end(what: str, *args: object) -> float:
    proc = _spawn(what, *args)
    _wait_ready(proc)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    return float(out.split()[-1])


def _kill_during(what: str, delay: float, *args: object) -> bool:
    """Start ``what``, SIGKILL it ``delay`` seconds into its work; True if it was killed before finishing."""
    proc = _spawn(what, *args)
    _wait_ready(proc)
    time.sleep(delay)
    finished = proc.poll() is not None
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    return not finished


def _delays(total: float, n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return sorted(rng.uniform(0.02, 0.98) * total for _ in range(n))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tokenized_model(tmp_path_factory.mktemp("fault-model") / "model", seed=5)


def test_compress_killed_at_random_moments_leaves_no_partial_pack(model_dir: Path, tmp_path: Path) -> None:
    from uc_attest._internal.pack.verify import verify_pack

    total = _run_to_end("compress", model_dir, tmp_path / "complete.ucpack")
    assert verify_pack(tmp_path / "complete.ucpack", progress=False).report.ok
    killed = 0
    for i, delay in enumerate(_delays(total, 4, seed=1)):
        out = tmp_path / f"killed-{i}.ucpack"
        killed += _kill_during("compress", delay, model_dir, out)
        if out.exists():  # only if it had finished: then it is whole
            assert verify_pack(out, progress=False).report.ok
        leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(f".killed-{i}.ucpack")]
        assert all(name.endswith(".partial") for name in leftovers), leftovers
    assert killed >= 1  # the kills did land during the work


def test_sign_killed_at_random_moments_leaves_no_partial_bundle_or_token_file(delivery_root: tuple[Path, Any], tmp_path: Path) -> None:
    from uc_attest._internal.attest import KeyAnchor, verify_bundle
    from uc_attest._internal.attest.keys import private_key_pem
    from uc_attest._internal.evaluate.tokens import load_token_file

    site = copy_delivery(delivery_root[0], tmp_path / "site")
    key_file = tmp_path / "vendor.key"
    key_file.write_bytes(private_key_pem(delivery_root[1], None))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    total = _run_to_end("sign", site.pack, key_file, out_dir)
    for p in out_dir.glob("killed.*"):
        p.unlink()
    killed = 0
    for delay in _delays(total, 3, seed=2):
        killed += _kill_during("sign", delay, site.pack, key_file, out_dir)
        bundle, tokens = out_dir / "killed.sigstore.json", out_dir / "killed.eval-tokens.safetensors"
        if bundle.exists():
            verify_bundle(bundle.read_bytes(), KeyAnchor(site.key))
        if tokens.exists():
            load_token_file(tokens)
        for p in out_dir.glob("killed.*"):
            p.unlink()
        assert not [p for p in out_dir.iterdir() if not p.name.startswith(".") and p.name != "eval.txt"]
    assert killed >= 1


def test_check_killed_at_random_moments_leaves_no_partial_results_or_report(delivery_root: tuple[Path, Any], tmp_path: Path) -> None:
    import pikepdf  # a dependency of uc_attest: its absence is a failure, not a skip

    site = copy_delivery(delivery_root[0], tmp_path / "site")
    results, report = tmp_path / "results.json", tmp_path / "report.pdf"
    total = _run_to_end("check", site.pack, site.bundle, site.tokens, site.key, results, report)
    results.unlink()
    report.unlink()
    killed = 0
    for delay in _delays(total, 3, seed=3):
        killed += _kill_during("check", delay, site.pack, site.bundle, site.tokens, site.key, results, report)
        if results.exists():
            assert json.loads(results.read_bytes())["verdict"] == "PASS"
            results.unlink()
        if report.exists():
            with pikepdf.open(report) as pdf:
                assert len(pdf.pages) >= 1
            report.unlink()
    assert killed >= 1


# --------------------------------------------------------------------------- full disk


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Any:
    """A 64 KiB tmpfs (root only; skipped elsewhere): smaller than the tiny pack."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs to fill needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_compress_onto_a_full_disk_is_one_line_and_leaves_nothing(model_dir: Path, tiny_disk: Path) -> None:
    rc, out, err = run_cli("uc", "compress", model_dir, "-o", tiny_disk / "pack.ucpack", "--method", "datafree", "--quiet")
    assert_one_line_error(rc, err, (2,))
    assert "space" in err.lower(), err
    assert not (tiny_disk / "pack.ucpack").exists()
    assert list(tiny_disk.iterdir()) == []  # the temporary directory is gone too


def test_sign_onto_a_full_disk_is_one_line_and_leaves_nothing(delivery_root: tuple[Path, Any], tiny_disk: Path, tmp_path: Path) -> None:
    from uc_attest._internal.attest.keys import private_key_pem

    site = copy_delivery(delivery_root[0], tmp_path / "site")
    key_file = tmp_path / "vendor.key"
    key_file.write_bytes(private_key_pem(delivery_root[1], None))
    key_file.chmod(0o600)  # a group/world-readable key is refused before anything else
    filler = tiny_disk / "filler"
    filler.write_bytes(b"\0" * (60 * 1024))  # leaves too little for the token file and the bundle
    rc, out, err = run_cli("attest", "sign", site.pack, "--key", key_file, "--eval-text", delivery_root[0] / "eval.txt", "--seq-len", "24",
                           "--max-windows", "2", "-o", tiny_disk / "b.sigstore.json", "--quiet")  # fmt: skip
    assert_one_line_error(rc, err, (2,))
    assert "space" in err.lower(), err
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler"]


def test_check_results_onto_a_full_disk_is_one_line(site: Any, tiny_disk: Path) -> None:
    (tiny_disk / "filler").write_bytes(b"\0" * (62 * 1024))
    rc, out, err = run_cli("attest", "check", site.pack, "--bundle", site.bundle, "--tokens", site.tokens, "--key", site.key,
                           "--json", tiny_disk / "results.json", "--quiet")  # fmt: skip
    assert_one_line_error(rc, err, (2,))
    assert "space" in err.lower(), err
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler"]
