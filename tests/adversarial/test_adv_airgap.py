"""The air gap for real: a full ``attest check`` in a network namespace without interfaces.

``unshare -n`` gives the process a network namespace holding only a loopback
device that is down: no route anywhere, not even to localhost. The check must
still pass (signature, hashes, weights, perplexity, report). Skipped, with the
reason, where unprivileged namespaces are not allowed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.paths import REPO


def _unshare_reason() -> str | None:
    exe = shutil.which("unshare")
    if exe is None:
        return "unshare(1) is not installed"
    for cmd in ([exe, "-n", "true"], [exe, "-rn", "true"]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode == 0:
            return None
    return f"cannot create a network namespace here: {proc.stderr.strip() or proc.returncode}"


def _unshare_cmd() -> list[str]:
    exe = shutil.which("unshare") or "unshare"
    return [exe, "-n"] if subprocess.run([exe, "-n", "true"], capture_output=True).returncode == 0 else [exe, "-rn"]


REASON = _unshare_reason()
pytestmark = [pytest.mark.skipif(REASON is not None, reason=REASON or ""), pytest.mark.slow]  # slow: the shared signed delivery

PROBE = r"""
import socket, sys
names = [line.split(":")[0].strip() for line in open("/proc/net/dev").read().splitlines()[2:]]
try:
    socket.create_connection(("1.1.1.1", 443), timeout=2)
    reached = True
except OSError:
    reached = False
print(" ".join(names), reached)
"""


def test_the_namespace_really_has_no_network() -> None:
    proc = subprocess.run([*_unshare_cmd(), sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    names, reached = proc.stdout.split()[:-1], proc.stdout.split()[-1]
    assert names == ["lo"] and reached == "False", proc.stdout


def test_attest_check_passes_inside_a_network_namespace_without_interfaces(site: Any, tmp_path: Path) -> None:
    attest = Path(sys.executable).with_name("attest")
    cmd = [str(attest)] if attest.exists() else [sys.executable, "-c", "from uc_attest._internal.cli.attest import main; main()"]
    results, report = tmp_path / "results.json", tmp_path / "report.pdf"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",  # no proxies, no HF cache, no tokens
           "PYTHONPATH": str(REPO)}  # this checkout's code, also where the venv's entry point was installed from another  # fmt: skip
    proc = subprocess.run(
        [*_unshare_cmd(), *cmd, "check", str(site.pack), "--bundle", str(site.bundle), "--tokens", str(site.tokens),
         "--key", str(site.key), "--policy", "strict", "--json", str(results), "--report", str(report), "--quiet"],
        capture_output=True, text=True, timeout=600, cwd=REPO, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "CHECK: PASS", proc.stdout
    data = json.loads(results.read_bytes())
    assert data["verdict"] == "PASS"
    assert {c["name"]: c["status"] for c in data["checks"]}["perplexity_match"] == "PASS"
    assert report.stat().st_size > 0


def test_a_tampered_pack_still_fails_inside_the_namespace(site: Any, tmp_path: Path) -> None:
    cfg = site.pack / "config.json"
    cfg.write_bytes(cfg.read_bytes().replace(b"}", b" }", 1))
    proc = subprocess.run(
        [*_unshare_cmd(), sys.executable, "-c", "from uc_attest._internal.cli.attest import main; main()", "check", str(site.pack),
         "--bundle", str(site.bundle), "--tokens", str(site.tokens), "--key", str(site.key), "--quiet"],
        capture_output=True, text=True, timeout=600, cwd=REPO, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "CHECK: FAIL", proc.stdout
    assert "Traceback" not in proc.stderr


def _keyless_delivery(site: Any, tmp_path: Path) -> tuple[Path, str, str]:
    """The site's signed statement, re-signed keyless by the local stand-in CA and logs; its trusted_root.json."""
    import base64
    from datetime import datetime, timedelta, timezone

    from support.fake_sigstore import FakeSigstore

    identity, issuer = "vendor@example.com", "https://accounts.example.com"
    payload = base64.b64decode(json.loads(site.bundle.read_bytes())["dsseEnvelope"]["payload"])
    now = datetime.now(timezone.utc).replace(microsecond=0)
    fake = FakeSigstore(start=now - timedelta(days=2))
    site.bundle.write_bytes(fake.sign(payload, identity, issuer, when=now - timedelta(minutes=5)))
    root = tmp_path / "trusted_root.json"
    root.write_text(json.dumps(fake.trusted_root()))
    return root, identity, issuer


def _keyless_check(site: Any, tmp_path: Path, root: Path, identity: str, issuer: str) -> subprocess.CompletedProcess[str]:
    results = tmp_path / "results.json"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8", "PYTHONPATH": str(REPO)}  # no proxies, no sigstore cache
    return subprocess.run(
        [*_unshare_cmd(), sys.executable, "-c", "from uc_attest._internal.cli.attest import main; main()", "check", str(site.pack),
         "--bundle", str(site.bundle), "--tokens", str(site.tokens), "--trusted-root", str(root), "--identity", identity,
         "--issuer", issuer, "--policy", "strict", "--json", str(results), "--quiet"],
        capture_output=True, text=True, timeout=600, cwd=REPO, env=env,
    )  # fmt: skip


def test_keyless_check_passes_inside_the_namespace(site: Any, tmp_path: Path) -> None:
    """Keyless mode (trusted root, identity, issuer): certificate chain, SCT, log proofs all verified offline."""
    root, identity, issuer = _keyless_delivery(site, tmp_path)
    proc = _keyless_check(site, tmp_path, root, identity, issuer)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "CHECK: PASS", proc.stdout
    data = json.loads((tmp_path / "results.json").read_bytes())
    assert data["verdict"] == "PASS" and data["artifact"]["signer"]["mode"] == "keyless"
    assert data["artifact"]["signer"]["identity"] == identity


def test_keyless_check_with_the_wrong_identity_fails_inside_the_namespace(site: Any, tmp_path: Path) -> None:
    root, _identity, issuer = _keyless_delivery(site, tmp_path)
    proc = _keyless_check(site, tmp_path, root, "attacker@example.com", issuer)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    data = json.loads((tmp_path / "results.json").read_bytes())
    assert {c["name"]: c["status"] for c in data["checks"]}["signature"] == "FAIL"
