"""Mutation campaign, small: every file of a signed tiny delivery, every structural region, seeded positions.

Each mutation must end in FAIL (exit 1) naming the check that owns the mutated
artifact, or in a one-line exit-2 error; none may pass and none may crash. The
2,000-mutation run over the SmolLM2-135M pack is bench/tamper_campaign.py; this
module drives the same code over the tiny delivery.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.delivery import load_campaign

pytestmark = pytest.mark.slow  # the shared signed delivery (tests/conftest.py)

REGIONS_EXPECTED = {
    "manifest JSON", "JSON", "safetensors header length", "safetensors header", "codes", "scales", "codebooks",
    "passthrough tensors", "token ids", "bundle: envelope JSON", "bundle: key hint", "bundle: payload (base64)",
    "bundle: signature (base64)", "bundle: payload (decoded, re-encoded)", "bundle: signature (decoded, re-encoded)",
}  # fmt: skip


def test_every_structural_region_is_found(site: Any) -> None:
    campaign = load_campaign()
    targets = campaign.delivery_targets(site.pack, site.bundle, site.tokens)
    regions = {r.name for t in targets for r in t.regions}
    assert REGIONS_EXPECTED <= regions, REGIONS_EXPECTED - regions
    labels = {t.label for t in targets}
    assert {"pack/ucpack.json", "eval tokens", "bundle"} <= labels
    assert {f"pack/{p.name}" for p in site.pack.iterdir()} <= labels  # every file of the pack is a target


def test_small_campaign_every_mutation_is_caught_and_nothing_crashes(site: Any, tmp_path: Path) -> None:
    campaign = load_campaign()
    tally, _seconds, _extra = campaign.campaign(site, count=120, seed=6, json_out=tmp_path / "r.json", log=lambda *_: None)
    table = campaign.format_table(tally)
    assert tally.tried == 120
    assert tally.total["crash"] == 0, tally.problems
    assert tally.total["missed"] == 0 and tally.total["misattributed"] == 0, tally.problems
    # Every target file was mutated, and the file-level cuts ran on each.
    assert len(tally.by_file) == len(campaign.delivery_targets(site.pack, site.bundle, site.tokens)), table
    assert tally.caught + tally.total["equivalent"] == tally.tried, table


def test_a_mutation_is_restored_exactly(site: Any, tmp_path: Path) -> None:
    campaign = load_campaign()
    before = campaign.delivery_digest(site)
    targets = campaign.delivery_targets(site.pack, site.bundle, site.tokens)
    for m in campaign.plan_mutations(targets, 3 * len(targets) + 5, seed=1)[-5:]:
        outcome = campaign.run_mutation(m, site, tmp_path / "r.json")
        assert outcome.status in ("caught", "caught-unreadable"), (m.describe(), outcome)
    assert campaign.delivery_digest(site) == before


def test_the_classifier_would_see_a_pass_and_a_crash(site: Any, tmp_path: Path) -> None:
    """The campaign's judge is not vacuous: an untouched delivery is 'missed', an exception is a 'crash'."""
    campaign = load_campaign()
    rc, out, err, results, crash = campaign.run_check_cli(site, tmp_path / "r.json")
    assert campaign.classify("pack", rc, out, err, results, crash).status == "missed"
    assert campaign.classify("pack", -1, "", "", None, "Traceback ...\nKeyError: x").status == "crash"
    assert campaign.classify("pack", 2, "", "error: a\nerror: b\n", None, None).status == "crash"
