"""Fixtures of the report tests: hand-built results (see report_samples.py)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from support.report_samples import make_results, sample_bundle
from support.signed_report import attest, check_and_sign

from uc_attest._internal.check.results import Results


@pytest.fixture
def pass_results() -> Results:
    return make_results("PASS")


@pytest.fixture
def fail_results() -> Results:
    return make_results("FAIL")


@pytest.fixture
def bundle_bytes() -> bytes:
    return sample_bundle()


@pytest.fixture(scope="session")
def checked(delivery_root: tuple[Path, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A delivery checked and signed by the customer: results.json, results.vsa.sigstore.json, report.pdf."""
    root = tmp_path_factory.mktemp("signed-verdict") / "d"
    shutil.copytree(delivery_root[0], root)
    rc, out, err = attest("keygen", "-o", root / "customer", "--organization", "Example Hospital")
    assert rc == 0, err
    rc, out, err = check_and_sign(root, root / "customer.key", root / "results.json", root / "report.pdf")
    assert rc == 0, out + err
    assert "verdict signature: key sha256:" in out and "signer's own claim" in out
    assert (root / "results.vsa.sigstore.json").is_file()
    return root
