"""Fixtures of the report tests: hand-built results (see report_samples.py)."""

from __future__ import annotations

import pytest
from support.report_samples import make_results, sample_bundle

from uc_attest.check.results import Results


@pytest.fixture
def pass_results() -> Results:
    return make_results("PASS")


@pytest.fixture
def fail_results() -> Results:
    return make_results("FAIL")


@pytest.fixture
def bundle_bytes() -> bytes:
    return sample_bundle()
