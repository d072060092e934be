"""Every number a policy holds has a finite, sane range; contradictions are refused; weakening is disclosed on page 1.

Before this, ``absolute_tolerance = inf`` or ``1e308``, ``max_ratio_to_baseline = inf``,
``max_age_days = inf`` and ``max_clock_skew_seconds = 2**62`` were accepted (the
last then crashed the check with OverflowError), and ``remeasure = false`` with
``required = true`` silently dropped the ``required``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from uc_attest._internal.errors import UsageError
from uc_attest._internal.policy.describe import weakened_checks
from uc_attest._internal.policy.loader import load_policy, parse_policy
from uc_attest._internal.policy.resources import shipped_policy_names

BASE = 'version = 1\nname = "p"\n'

OUT_OF_RANGE = [
    ("perplexity", "absolute_tolerance", "inf"),
    ("perplexity", "absolute_tolerance", "1e308"),
    ("perplexity", "absolute_tolerance", "nan"),
    ("perplexity", "absolute_tolerance", "-0.1"),
    ("perplexity", "relative_tolerance", "nan"),
    ("perplexity", "relative_tolerance", "1.0"),
    ("perplexity", "max_ratio_to_baseline", "inf"),
    ("perplexity", "max_ratio_to_baseline", "1e308"),
    ("perplexity", "max_ratio_to_baseline", "0.5"),
    ("attestation", "max_age_days", "inf"),
    ("attestation", "max_age_days", "1e308"),
    ("attestation", "max_age_days", "nan"),
    ("attestation", "max_age_days", "0"),
    ("attestation", "max_clock_skew_seconds", str(2**62)),
    ("attestation", "max_clock_skew_seconds", "-1"),
]


def _policy(section: str, body: str) -> bytes:
    return f"{BASE}[{section}]\n{body}\n".encode()


@pytest.mark.parametrize(("section", "key", "value"), OUT_OF_RANGE)
def test_numbers_outside_their_range_are_refused_naming_the_field(section: str, key: str, value: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_policy(_policy(section, f"{key} = {value}"), "p.toml")
    message = str(info.value)
    assert f"{section}.{key}" in message and "\n" not in message, message


@pytest.mark.parametrize(
    ("section", "body", "field"),
    [
        ("perplexity", "remeasure = false\nrequired = true", "perplexity.required"),
        ("signer", 'allow_key = false\nkey_fingerprints = ["' + "ab" * 32 + '"]', "signer.key_fingerprints"),
        ("signer", 'allow_keyless = false\nidentities = ["a@example.com"]', "signer.identities"),
    ],
)
def test_contradictions_are_refused_naming_the_field(section: str, body: str, field: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_policy(_policy(section, body), "p.toml")
    assert field in str(info.value) and "\n" not in str(info.value)


def test_values_at_the_edges_of_the_ranges_are_accepted() -> None:
    text = (BASE + "[attestation]\nmax_age_days = 3650\nmax_clock_skew_seconds = 604800\n"
            "[perplexity]\nabsolute_tolerance = 10.0\nrelative_tolerance = 0.5\nmax_ratio_to_baseline = 10.0\n")  # fmt: skip
    policy = parse_policy(text.encode(), "p.toml").policy
    assert policy.perplexity.absolute_tolerance == 10.0 and policy.attestation.max_clock_skew_seconds == 604800
    # remeasure = false alone is coherent: nothing measured, nothing required
    assert not parse_policy(_policy("perplexity", "remeasure = false"), "p.toml").policy.perplexity.remeasure


def test_every_shipped_policy_is_in_range() -> None:
    names = shipped_policy_names()
    assert {"default", "strict", "development"} <= set(names)
    for name in names:
        loaded = load_policy(name)
        assert loaded.policy.name == name and "(shipped with uc_attest)" in loaded.source


def test_the_cli_refuses_an_infinite_tolerance_with_one_line(tmp_path: Path) -> None:
    from support.cli import assert_one_line_error, run_cli

    bad = tmp_path / "bad.toml"
    bad.write_bytes(_policy("perplexity", "absolute_tolerance = inf"))
    rc, _out, err = run_cli("attest", "check", tmp_path, "--key", tmp_path / "k.pub", "--policy", bad)
    assert_one_line_error(rc, err, (2,))
    assert "perplexity.absolute_tolerance" in err


def test_weakened_checks_are_listed_for_the_development_policy_and_none_for_default() -> None:
    assert weakened_checks(load_policy("default").policy) == []
    assert weakened_checks(load_policy("strict").policy) == []
    lines = weakened_checks(load_policy("development").policy)
    assert any("re-measurement is OFF" in line for line in lines)
    assert any("Bit-exact weights are ADVISORY" in line for line in lines)
    assert any("Unsigned files are TOLERATED" in line for line in lines)
    assert any("expiry is OFF" in line for line in lines)
    advisory = parse_policy(_policy("perplexity", "required = false"), "p.toml").policy
    assert any("Perplexity match is ADVISORY" in line for line in weakened_checks(advisory))


def test_the_report_says_so_on_page_one_right_under_the_verdict() -> None:
    from support.report_samples import make_results, sample_bundle

    from uc_attest._internal.report import BUNDLE_ATTACHMENT, render_html

    html = render_html(make_results("PASS", policy_name="development"), {BUNDLE_ATTACHMENT: sample_bundle()})
    verdict_end = html.index('class="word"')
    first_page = html[verdict_end : html.index("How to read this report")]
    assert "switches checks off or makes them advisory" in first_page
    assert "Perplexity re-measurement is OFF" in first_page and "Bit-exact weights are ADVISORY" in first_page
    plain = render_html(make_results("PASS"), {BUNDLE_ATTACHMENT: sample_bundle()})
    assert "switches checks off" not in plain
