"""The customer-signed report the report tests verify and forge: running ``attest`` with an empty key passphrase."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

from support.cli import CliResult, run_cli

ENV = {"UC_ATTEST_KEY_PASSPHRASE": ""}


def attest(*args: object) -> CliResult:
    return run_cli("attest", *args, env=ENV)


def verify(site: Path, report: Path | None = None, customer: Path | None = None) -> tuple[int, str, str]:
    return attest("verify-report", report or site / "report.pdf", "--key", site / "vendor.pub", "--customer-key", customer or site / "customer.pub")


KEYLESS_CUSTOMER = ("qa@hospital.example", "https://accounts.example.com")
"""The identity and issuer a keyless customer verdict is signed with (:func:`write_keyless_report`)."""


def write_keyless_report(site: Path, logged: datetime) -> Path:
    """``site/keyless.pdf``: the site's results with a verdict signed keyless (a fake Sigstore, logged at ``logged``).

    The fake's trusted root is written to ``site/trusted_root.json``.
    """
    from support.fake_sigstore import FakeSigstore

    from uc_attest._internal.check.results import load_results
    from uc_attest._internal.check.vsa import build_vsa_statement
    from uc_attest._internal.report import render_report_bytes
    from uc_attest._internal.report import BUNDLE_ATTACHMENT, VSA_ATTACHMENT

    fake = FakeSigstore()
    (site / "trusted_root.json").write_text(json.dumps(fake.trusted_root()))
    results_bytes = (site / "results.json").read_bytes()
    results = load_results(results_bytes)
    bundle = (site / "pack.sigstore.json").read_bytes()
    statement = build_vsa_statement(results, results_bytes, hashlib.sha256(bundle).hexdigest())
    vsa = fake.sign(statement.to_payload(), *KEYLESS_CUSTOMER, when=logged)
    report = site / "keyless.pdf"
    report.write_bytes(render_report_bytes(results, {BUNDLE_ATTACHMENT: bundle, VSA_ATTACHMENT: vsa}))
    return report


def check_and_sign(site: Path, sign_key: Path, json_path: Path, report_path: Path) -> CliResult:
    """``attest check`` of the site's delivery under the development policy, the verdict signed with ``sign_key``."""
    return attest("check", site / "pack", "--key", site / "vendor.pub", "--policy", "development", "--json", json_path,
                  "--report", report_path, "--sign-key", sign_key, "--quiet")  # fmt: skip
