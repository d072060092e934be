"""A shipped level name belongs only to the shipped policy file's digest.

A copy of development.toml renamed "strict" used to be recorded as policy
"strict" and to earn UC_ATTEST_POLICY_STRICT in the signed verdict and in
verify-report.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from support.cli import run_cli
from support.delivery import copy_delivery

from uc_attest._internal.check.vsa import parse_vsa
from uc_attest._internal.policy.levels import CUSTOM_LEVEL_PREFIX, is_shipped_policy, policy_level, recorded_policy_name, shipped_policy_digests
from uc_attest._internal.policy.resources import shipped_policy_path

pytestmark = pytest.mark.slow


def test_levels_are_tied_to_the_shipped_bytes() -> None:
    digests = shipped_policy_digests()
    assert set(digests) >= {"default", "development", "strict"}
    assert policy_level("strict", digests["strict"]) == "UC_ATTEST_POLICY_STRICT"
    assert recorded_policy_name("strict", digests["strict"]) == "strict"
    assert not is_shipped_policy("strict", digests["development"])
    renamed = policy_level("strict", digests["development"])
    assert renamed == CUSTOM_LEVEL_PREFIX + digests["development"][:16].upper()
    assert recorded_policy_name("strict", digests["development"]).startswith("strict (custom, sha256 ")
    assert policy_level("mine", "ab" * 32) != policy_level("mine", "cd" * 32)  # each custom policy its own level


@pytest.fixture(scope="module")
def renamed_check(delivery_root: tuple[Path, object], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("renamed-policy") / "d"
    copy_delivery(delivery_root[0], root)
    text = shipped_policy_path("development").read_text(encoding="utf-8").replace('name = "development"', 'name = "strict"')
    assert 'name = "strict"' in text
    (root / "policy.toml").write_text(text, encoding="utf-8")
    rc, out, err = run_cli("attest", "keygen", "-o", root / "customer", "--organization", "Example Hospital")
    assert rc == 0, err
    rc, out, err = run_cli("attest", "check", root / "pack", "--key", root / "vendor.pub", "--policy", root / "policy.toml", "--json", root / "results.json",
                          "--report", root / "report.pdf", "--sign-key", root / "customer.key", "--quiet")  # fmt: skip
    assert rc == 0, out + err
    assert "(policy strict (custom, sha256 " in out
    return root


def test_a_renamed_copy_earns_its_own_level_in_the_signed_verdict(renamed_check: Path) -> None:
    results = json.loads((renamed_check / "results.json").read_text())
    assert results["policy"]["name"].startswith("strict (custom, sha256 ")
    bundle = json.loads((renamed_check / "results.vsa.sigstore.json").read_bytes())
    verdict = parse_vsa(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    assert verdict.summary.verified_levels == [CUSTOM_LEVEL_PREFIX + results["policy"]["sha256"][:16].upper()]
    assert "UC_ATTEST_POLICY_STRICT" not in json.dumps(verdict.statement.predicate)


def test_verify_report_does_not_call_it_strict(renamed_check: Path) -> None:
    rc, out, err = run_cli("attest", "verify-report", renamed_check / "report.pdf", "--key", renamed_check / "vendor.pub",
                          "--customer-key", renamed_check / "customer.pub")  # fmt: skip
    assert rc == 0, out + err
    assert "policy strict (custom, sha256 " in out and "policy strict)" not in out
