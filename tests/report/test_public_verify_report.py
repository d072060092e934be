"""``uc_attest.verify_report``: returns only for a report that verifies, raises VerificationError (exit 1) otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

import uc_attest

pytestmark = pytest.mark.slow


def test_a_customer_signed_report_verifies(checked: Path) -> None:
    outcome = uc_attest.verify_report(checked / "report.pdf", uc_attest.KeyAnchor(checked / "vendor.pub"), uc_attest.KeyAnchor(checked / "customer.pub"))
    assert outcome.verified and outcome.results is not None and outcome.results.verdict.value == "PASS"


def test_a_report_with_a_byte_changed_or_the_wrong_customer_raises(checked: Path, tmp_path: Path) -> None:
    vendor, customer = uc_attest.KeyAnchor(checked / "vendor.pub"), uc_attest.KeyAnchor(checked / "customer.pub")
    forged = tmp_path / "report.pdf"
    data = bytearray((checked / "report.pdf").read_bytes())
    data.extend(b"\n%%EOF\n")  # a trailing revision after the customer's signature
    forged.write_bytes(bytes(data))
    with pytest.raises(uc_attest.VerificationError) as caught:
        uc_attest.verify_report(forged, vendor, customer)
    assert caught.value.exit_code == 1 and "NOT VERIFIED" in str(caught.value)
    with pytest.raises(uc_attest.UsageError):  # the vendor's own key as the customer's: refused before reading (exit 2)
        uc_attest.verify_report(checked / "report.pdf", vendor, vendor)
    uc_attest.generate_keypair(tmp_path / "other")
    with pytest.raises(uc_attest.VerificationError):
        uc_attest.verify_report(checked / "report.pdf", vendor, uc_attest.KeyAnchor(tmp_path / "other.pub"))
