"""The policy's decisions on facts: signer, age, perplexity tolerance, ratio to baseline."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uc_attest._internal.policy.model import AttestationPolicy, PerplexityPolicy, SignerPolicy
from uc_attest._internal.policy.rules import (
    judge_baseline_ratio,
    judge_key_signer,
    judge_keyless_signer,
    judge_perplexity,
    judge_signing_time,
    perplexity_tolerance,
)

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
KEY_A = "a" * 64
KEY_B = "b" * 64


def test_any_key_when_the_list_is_empty_but_never_a_revoked_one() -> None:
    assert judge_key_signer(KEY_A, T0, SignerPolicy()).ok
    revoked = judge_key_signer(KEY_A, T0, SignerPolicy(revoked_key_fingerprints=[KEY_A]))
    assert not revoked.ok and "revoked" in revoked.summary


def test_allow_list_and_key_mode_switch() -> None:
    policy = SignerPolicy(key_fingerprints=[KEY_A])
    assert judge_key_signer("sha256:" + KEY_A.upper(), T0, policy).ok
    refused = judge_key_signer(KEY_B, T0, policy)
    assert not refused.ok and "not on the policy's list" in refused.summary
    assert not judge_key_signer(KEY_A, T0, SignerPolicy(allow_key=False)).ok


def test_validity_window_applies_to_the_signing_time() -> None:
    policy = SignerPolicy(valid_from=T0, valid_until=T0 + timedelta(days=10))
    assert judge_key_signer(KEY_A, T0 + timedelta(days=1), policy).ok
    assert "before" in judge_key_signer(KEY_A, T0 - timedelta(seconds=1), policy).summary
    assert "after" in judge_key_signer(KEY_A, T0 + timedelta(days=11), policy).summary


def test_keyless_identities_and_issuers() -> None:
    policy = SignerPolicy(identities=["rel@vendor.example"], issuers=["https://issuer.example"])
    assert judge_keyless_signer("rel@vendor.example", "https://issuer.example", T0, policy).ok
    assert not judge_keyless_signer("mallory@evil.example", "https://issuer.example", T0, policy).ok
    assert not judge_keyless_signer("rel@vendor.example", "https://other.example", T0, policy).ok
    assert not judge_keyless_signer("rel@vendor.example", "https://issuer.example", T0, SignerPolicy(allow_keyless=False)).ok
    assert judge_keyless_signer("anyone", "https://any", T0, SignerPolicy()).ok


def test_age_expiry_and_future_signatures() -> None:
    rules = AttestationPolicy(max_age_days=30)
    assert judge_signing_time(T0, T0 + timedelta(days=365), T0 + timedelta(days=29), rules).ok
    old = judge_signing_time(T0, None, T0 + timedelta(days=31), rules)
    assert not old.ok and "31.0 days old" in old.summary
    expired = judge_signing_time(T0, T0 + timedelta(days=1), T0 + timedelta(days=2), AttestationPolicy())
    assert not expired.ok and "expired" in expired.summary
    assert judge_signing_time(T0, T0 + timedelta(days=1), T0 + timedelta(days=2), AttestationPolicy(honour_expiry=False)).ok
    future = judge_signing_time(T0 + timedelta(hours=1), None, T0, AttestationPolicy())
    assert not future.ok and "future" in future.summary
    assert judge_signing_time(T0 + timedelta(seconds=100), None, T0, AttestationPolicy()).ok  # within skew


def test_zero_tolerance_means_bit_identical() -> None:
    exact = PerplexityPolicy()
    value = 21.734118
    assert judge_perplexity(value, value, exact).ok
    near = math.nextafter(value, math.inf)
    decision = judge_perplexity(value, near, exact)
    assert not decision.ok and "exact equality" in decision.summary
    assert decision.details["attested_hex"] != decision.details["measured_hex"]


def test_relative_and_absolute_tolerance_take_the_larger() -> None:
    rules = PerplexityPolicy(relative_tolerance=0.01, absolute_tolerance=0.5)
    assert perplexity_tolerance(20.0, rules) == 0.5
    assert perplexity_tolerance(100.0, rules) == pytest.approx(1.0)
    assert judge_perplexity(20.0, 20.5, rules).ok
    assert not judge_perplexity(20.0, 20.6, rules).ok
    identical = judge_perplexity(20.0, 20.0, rules)
    assert identical.ok and "bit for bit" in identical.summary


def test_non_finite_perplexity_fails() -> None:
    assert not judge_perplexity(20.0, math.nan, PerplexityPolicy(relative_tolerance=0.5)).ok
    assert not judge_perplexity(20.0, math.inf, PerplexityPolicy(relative_tolerance=0.5)).ok


@given(
    attested=st.floats(min_value=1.0, max_value=1e4),
    delta=st.floats(min_value=-100.0, max_value=100.0),
    rel=st.floats(min_value=0.0, max_value=0.5),
    absolute=st.floats(min_value=0.0, max_value=10.0),
)
def test_tolerance_rule_is_symmetric_and_matches_its_definition(attested: float, delta: float, rel: float, absolute: float) -> None:
    rules = PerplexityPolicy(relative_tolerance=rel, absolute_tolerance=absolute)
    measured = attested + delta
    if measured <= 0:
        return
    ok = judge_perplexity(attested, measured, rules).ok
    if rules.exact:
        assert ok == (measured == attested)
    else:
        assert ok == (abs(measured - attested) <= max(absolute, rel * attested))


def test_ratio_to_baseline() -> None:
    assert judge_baseline_ratio(11.0, 10.0, 1.1).ok
    over = judge_baseline_ratio(11.5, 10.0, 1.1)
    assert not over.ok and "above the allowed 1.1" in over.summary
    assert judge_baseline_ratio(50.0, 10.0, None).ok
