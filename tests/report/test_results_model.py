"""results.json: canonical bytes, a self-consistent verdict, a published schema that matches the model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from uc_attest._internal.check.results import (
    CheckResult,
    CheckStatus,
    Results,
    TensorCheck,
    Verdict,
    block_label,
    derive_verdict,
    load_results,
    results_json_schema_text,
    summarize_blocks,
    verdict_reasons,
)
from uc_attest._internal.errors import UnreadableInputError

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "results.schema.json"


def test_committed_schema_equals_the_generated_one() -> None:
    generated = results_json_schema_text()
    if os.environ.get("UC_ATTEST_UPDATE_SCHEMA"):
        SCHEMA.write_text(generated, encoding="utf-8")
    assert SCHEMA.read_text(encoding="utf-8") == generated, (
        "docs/results.schema.json is stale: run UC_ATTEST_UPDATE_SCHEMA=1 pytest tests/report/test_results_model.py"
    )


def test_round_trip_is_byte_identical(pass_results: Results) -> None:
    data = pass_results.to_json_bytes()
    again = load_results(data)
    assert again == pass_results
    assert again.to_json_bytes() == data
    assert data.endswith(b"\n") and b'"checked_at": "2025-04-14T16:02:45Z"' in data


def test_results_hold_what_an_auditor_needs(fail_results: Results) -> None:
    raw = json.loads(fail_results.to_json_bytes())
    assert raw["verdict"] == "FAIL"
    assert raw["digests"].keys() >= {"bundle_sha256", "pack_manifest_sha256", "policy_sha256"}
    assert raw["artifact"]["signer"]["key_fingerprint"]
    assert len(raw["perplexity"]["window_nll_diff"]) == raw["perplexity"]["attested"]["windows"] == 40
    assert {f["status"] for f in raw["files"]} == {"PASS", "FAIL"}
    assert raw["reconstruction"]["blocks"][7] == {"block": "model.layers.7", "tensors": 9, "matched": 8, "mismatched": 1, "skipped": 0, "status": "FAIL"}
    assert raw["environments"]["vendor"]["processor"] != raw["environments"]["customer"]["processor"]
    assert any("model.layers.7.mlp.down_proj.weight" in reason for reason in raw["verdict_reasons"])


def test_a_verdict_that_contradicts_the_checks_is_refused(fail_results: Results) -> None:
    raw = json.loads(fail_results.to_json_bytes())
    raw["verdict"] = "PASS"
    with pytest.raises(UnreadableInputError, match="verdict does not follow from the checks"):
        load_results(json.dumps(raw).encode(), "edited.json")


def test_edited_policy_text_is_refused(pass_results: Results) -> None:
    raw = json.loads(pass_results.to_json_bytes())
    raw["policy"]["text"] += "\n# edited"
    with pytest.raises(UnreadableInputError, match="policy.sha256"):
        load_results(json.dumps(raw).encode())


@pytest.mark.parametrize("data", [b"", b"\xff", b"[1, 2]", b'{"verdict": "PASS"}', b'{"x": 1}'])
def test_unreadable_results_are_one_line(data: bytes) -> None:
    with pytest.raises(UnreadableInputError) as info:
        load_results(data, "r.json")
    assert "\n" not in str(info.value) and str(info.value).startswith("r.json: ")


def _check(status: CheckStatus, required: bool = True, name: str = "x") -> CheckResult:
    return CheckResult(name=name, title=name.title(), status=status, required=required, summary="because")


def test_verdict_rules() -> None:
    assert derive_verdict([]) is Verdict.FAIL
    assert derive_verdict([_check(CheckStatus.PASS)]) is Verdict.PASS
    assert derive_verdict([_check(CheckStatus.PASS), _check(CheckStatus.FAIL, required=False, name="y")]) is Verdict.PASS
    assert derive_verdict([_check(CheckStatus.PASS), _check(CheckStatus.SKIP, name="y")]) is Verdict.FAIL
    assert derive_verdict([_check(CheckStatus.SKIP, required=False)]) is Verdict.PASS
    assert verdict_reasons([_check(CheckStatus.SKIP, name="sig")]) == ["Sig: not run (because)"]


def test_blocks_group_and_sort_numerically() -> None:
    assert block_label("model.layers.12.mlp.up_proj.weight") == "model.layers.12"
    assert block_label("transformer.h.3.attn.c_attn.weight") == "transformer.h.3"
    assert block_label("backbone.layers.0.mixer.in_proj.weight") == "backbone.layers.0"
    assert block_label("lm_head.weight") == "other"
    names = ["lm_head.weight", "model.layers.10.a", "model.layers.2.a", "model.layers.2.b"]
    tensors = [
        TensorCheck(name=n, block=block_label(n), kind="quantized", status=CheckStatus.FAIL if n.endswith("b") else CheckStatus.PASS)
        for n in names
    ]
    blocks = summarize_blocks(tensors)
    assert [b.block for b in blocks] == ["model.layers.2", "model.layers.10", "other"]
    assert blocks[0].status is CheckStatus.FAIL and blocks[0].mismatched == 1
