"""``attest check`` end to end on a tiny random model: sign, check, tamper, re-verify the report.

A two-layer Llama with a small byte-level tokenizer is compressed, signed by the
vendor's acceptance test, and checked by the CLI as a customer would: the
session's shared delivery (tests/conftest.py), copied when a test tampers with it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pikepdf
import pytest
from support.cli import run_cli

from uc_attest._internal.report import RESULTS_ATTACHMENT

pytestmark = pytest.mark.slow


@pytest.fixture
def site(site: Any) -> Path:
    """The folder of a private copy of the shared delivery (tests/conftest.py)."""
    return site.pack.parent


def _check(site: Path, *extra: object) -> tuple[int, dict, bytes]:
    rc, out, err = run_cli("attest", "check", site / "pack", "--key", site / "vendor.pub", "--json", site / "results.json", "--report", site / "report.pdf", "--quiet", *extra)
    assert "Traceback" not in err
    return rc, json.loads((site / "results.json").read_bytes()), (site / "report.pdf").read_bytes()


def test_strict_policy_passes_on_the_same_machine_and_the_report_verifies(site: Path) -> None:
    rc, results, report = _check(site, "--policy", "strict")
    assert rc == 0, results["verdict_reasons"]
    assert results["verdict"] == "PASS" and results["policy"]["name"] == "strict"
    statuses = {c["name"]: c["status"] for c in results["checks"]}
    assert set(statuses.values()) == {"PASS"}, statuses
    assert results["perplexity"]["bit_identical"] is True
    assert set(results["perplexity"]["window_nll_diff"]) == {0.0}
    assert results["environments"]["vendor"]["processor"] == results["environments"]["customer"]["processor"]
    assert results["reconstruction"]["blocks"][0]["block"] == "model.layers.0"
    with pikepdf.open(site / "report.pdf") as pdf:
        assert pdf.attachments[RESULTS_ATTACHMENT].get_file().read_bytes() == (site / "results.json").read_bytes()
    rc, out, err = run_cli("attest", "verify-report", site / "report.pdf", "--key", site / "vendor.pub")
    assert rc == 1 and "FAIL  verdict UNSIGNED" in out, out + err  # checked without --sign-key
    assert "ok    pages: byte for byte a fresh rendering" in out
    rc, _out, err = run_cli("attest", "report", site / "results.json", "-o", site / "again.pdf", "--bundle", site / "pack.sigstore.json")
    assert rc == 0 and (site / "again.pdf").read_bytes() == report


def test_a_tampered_shard_fails_and_the_report_says_why(site: Path) -> None:
    shard = max((p for p in (site / "pack").rglob("*.safetensors")), key=lambda p: p.stat().st_size)
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0x01
    shard.write_bytes(bytes(data))
    rc, results, _report = _check(site)
    assert rc == 1 and results["verdict"] == "FAIL"
    statuses = {c["name"]: c["status"] for c in results["checks"]}
    assert statuses["signature"] == "PASS"
    assert statuses["pack_files"] == "FAIL" and statuses["perplexity_match"] == "SKIP"
    assert any(shard.name in reason for reason in results["verdict_reasons"])
    rel = shard.relative_to(site / "pack").as_posix()
    assert next(f for f in results["files"] if f["path"] == rel)["status"] == "FAIL"


def test_fail_fast_stops_before_rebuilding_weights_and_still_fails(site: Path) -> None:
    shard = max((p for p in (site / "pack").rglob("*.safetensors")), key=lambda p: p.stat().st_size)
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0x01
    shard.write_bytes(bytes(data))
    rc, results, _report = _check(site, "--fail-fast")
    assert rc == 1 and results["verdict"] == "FAIL"
    statuses = {c["name"]: c["status"] for c in results["checks"]}
    assert statuses["pack_files"] == "FAIL"
    assert statuses["pack_structure"] == statuses["weights_bit_exact"] == statuses["perplexity_match"] == "SKIP"
    assert "--fail-fast" in next(c["summary"] for c in results["checks"] if c["name"] == "pack_structure")
    # on an untouched pack --fail-fast changes nothing
    shard.write_bytes(bytes(data[:-1]) + bytes([data[-1] ^ 0x01]))
    rc, results, _report = _check(site, "--fail-fast")
    assert rc == 0 and {c["status"] for c in results["checks"]} <= {"PASS", "SKIP"}


def test_the_wrong_key_fails_every_later_check(site: Path) -> None:
    from uc_attest._internal.attest.keys import Algorithm, generate_private_key, public_key_pem

    (site / "vendor.pub").write_bytes(public_key_pem(generate_private_key(Algorithm.P256).public_key()))
    rc, results, _report = _check(site)
    assert rc == 1
    statuses = {c["name"]: c["status"] for c in results["checks"]}
    assert statuses["signature"] == "FAIL"
    assert {statuses[n] for n in ("signer_trust", "attestation_age", "pack_files", "perplexity_match")} == {"SKIP"}
    assert results["environments"]["vendor"] is None


def test_development_policy_skips_the_measurement_and_tolerates_extra_files(site: Path) -> None:
    (site / "pack" / "NOTES.txt").write_text("added by the customer")
    rc, results, _report = _check(site, "--policy", "development")
    checks = {c["name"]: c for c in results["checks"]}
    assert checks["perplexity_match"]["status"] == "SKIP" and not checks["perplexity_match"]["required"]
    assert checks["pack_files"]["status"] == "PASS"
    assert next(f for f in results["files"] if f["path"] == "NOTES.txt")["status"] == "SKIP"
    assert results["perplexity"]["measured"] is None
    # One rule for unsigned files (allow_unattested_files): the structure check tolerates it too.
    assert checks["pack_structure"]["status"] == "PASS" and "tolerated" in checks["pack_structure"]["summary"]
    assert rc == 0 and results["verdict"] == "PASS"


def test_a_revoked_key_in_the_policy_fails(site: Path) -> None:
    from uc_attest._internal.attest.keys import fingerprint, load_public_key

    fp = fingerprint(load_public_key(site / "vendor.pub"))
    policy = site / "revoking.toml"
    policy.write_text(f'version = 1\nname = "revoking"\n[signer]\nrevoked_key_fingerprints = ["{fp}"]\n[perplexity]\nremeasure = false\n')
    rc, results, _report = _check(site, "--policy", policy)
    assert rc == 1
    trust = next(c for c in results["checks"] if c["name"] == "signer_trust")
    assert trust["status"] == "FAIL" and "revoked" in trust["summary"]


def test_bad_invocations_are_one_line_exit_2(site: Path) -> None:
    cases = [
        ("check", site / "pack"),
        ("check", site / "pack", "--key", site / "vendor.pub", "--identity", "a@b"),
        ("check", site / "pack", "--trusted-root", site / "root.json"),
        ("check", site / "pack", "--key", site / "vendor.pub", "--policy", "nosuch"),
        ("check", site / "pack", "--key", site / "vendor.pub", "--bundle", site / "absent.json"),
        ("check", site / "absent", "--key", site / "vendor.pub"),
        ("check", site / "pack", "--key", site / "vendor.pub", "--json", site / "no" / "r.json"),
        ("check", site / "pack", "--key", site / "vendor.pub", "--json", site / "pack" / "r.json"),
        ("check", site / "pack", "--key", site / "vendor.pub", "--report", site / "vendor.pub"),
    ]
    for args in cases:
        rc, _out, err = run_cli("attest", *args)
        assert rc == 2, (args, err)
        assert err.count("\n") == 1 and err.startswith("error: "), err
    assert not (site / "results.json").exists() and not (site / "report.pdf").exists()
