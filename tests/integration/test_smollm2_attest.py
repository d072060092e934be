"""The vendor-to-customer story on the real model, through the real CLIs: keygen, sign, check, report."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from uc_attest._internal.policy.resources import policies_dir

pytestmark = pytest.mark.integration

ATTEST = [sys.executable, "-c", "from uc_attest._internal.cli.attest import main; main()"]


def attest(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full_env = dict(os.environ, HF_HUB_OFFLINE="1", **(env or {}))
    return subprocess.run([*ATTEST, *args], capture_output=True, text=True, timeout=900, env=full_env)


@pytest.fixture(scope="module")
def signed(smollm2_dir: Path, smollm2_pack: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("attest")
    key = root / "vendor"
    proc = attest("keygen", "-o", str(key), env={"UC_ATTEST_KEY_PASSPHRASE": "integration"})
    assert proc.returncode == 0, proc.stderr
    bundle = root / "smollm2.sigstore.json"
    proc = attest("sign", str(smollm2_pack), "--key", f"{key}.key", "--baseline", str(smollm2_dir),
                  "--seq-len", "256", "--max-windows", "3", "-o", str(bundle), "--quiet",
                  env={"UC_ATTEST_KEY_PASSPHRASE": "integration"})  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "baseline perplexity" in proc.stdout
    return {"root": root, "pub": Path(f"{key}.pub"), "bundle": bundle, "pack": smollm2_pack}


def test_customer_check_passes_strict_policy_with_report(signed: dict[str, Path]) -> None:
    report, results = signed["root"] / "report.pdf", signed["root"] / "results.json"
    customer = signed["root"] / "customer"
    proc = attest("keygen", "-o", str(customer), "--organization", "Integration Test Hospital", env={"UC_ATTEST_KEY_PASSPHRASE": ""})
    assert proc.returncode == 0, proc.stderr
    proc = attest("check", str(signed["pack"]), "--bundle", str(signed["bundle"]), "--key", str(signed["pub"]),
                  "--policy", str(policies_dir() / "strict.toml"), "--report", str(report), "--json", str(results),
                  "--sign-key", f"{customer}.key", "--quiet")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "CHECK: PASS"
    data = json.loads(results.read_text())
    assert data["verdict"] == "PASS"
    assert "Q4_1" in data["artifact"]["model_source_note"]  # the weights' origin reaches the auditor
    assert report.read_bytes().startswith(b"%PDF")
    proc = attest("verify-report", str(report), "--key", str(signed["pub"]), "--customer-key", f"{customer}.pub")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "REPORT: VERIFIED"
    # the vendor's own key as the customer's anchor: a verdict the vendor signed for itself is not the customer's (exit 2)
    proc = attest("verify-report", str(report), "--key", str(signed["pub"]), "--customer-key", str(signed["pub"]))
    assert proc.returncode == 2 and "same signer" in proc.stderr and proc.stdout.splitlines()[-1] == "REPORT: NOT VERIFIED"


def test_customer_check_fails_on_a_flipped_byte_and_names_the_file(signed: dict[str, Path], tmp_path: Path) -> None:
    pack = tmp_path / "pack"
    shutil.copytree(signed["pack"], pack)
    shard = next(pack.glob("passthrough-*.safetensors"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    results = tmp_path / "results.json"
    proc = attest("check", str(pack), "--bundle", str(signed["bundle"]), "--key", str(signed["pub"]),
                  "--tokens", str(signed["bundle"]).replace(".sigstore.json", ".eval-tokens.safetensors"),
                  "--json", str(results), "--report", str(tmp_path / "report.pdf"), "--quiet")  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "CHECK: FAIL"
    assert shard.name in proc.stdout
    assert (tmp_path / "report.pdf").is_file()
