"""Statement, predicate, subjects and environment: exact numbers, one meaning, stable bytes."""

from __future__ import annotations

import json
import math

import pytest
from support.statements import make_predicate, make_statement, perplexity_result
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from uc_attest._internal.attest.errors import StatementError
from uc_attest._internal.attest.predicate import PREDICATE_TYPE, AcceptanceTestPredicate, PerplexityResult, float_hex
from uc_attest._internal.attest.statement import DigestSet, Statement, Subject, parse_statement
from uc_attest._internal.attest.subjects import build_subjects, split_subjects
from uc_attest._internal.evaluate.environment import EnvironmentInfo, capture_environment


def test_payload_is_canonical_and_stable() -> None:
    a = make_statement().to_payload()
    b = make_statement().to_payload()
    assert a == b
    assert b"\n" not in a and b": " not in a
    data = json.loads(a)
    assert list(data) == sorted(data)
    assert data["_type"] == "https://in-toto.io/Statement/v1"
    assert data["predicateType"] == PREDICATE_TYPE
    assert parse_statement(a) == make_statement()


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_round_trip_exactly_through_the_payload(x: float) -> None:
    text = json.dumps({"v": x, "h": float_hex(x)})
    back = json.loads(text)
    assert float.fromhex(back["h"]) == x and math.copysign(1, float.fromhex(back["h"])) == math.copysign(1, x)
    assert back["v"] == x


def test_number_and_hex_must_agree() -> None:
    good = perplexity_result([1.5, 2.25], ppl=math.exp(3.75 / 20))  # coherent: the cross-checks pass
    data = good.model_dump(by_alias=True)
    data["perplexityHex"] = float_hex(good.perplexity + 1e-12)
    with pytest.raises(ValidationError, match="disagree"):
        PerplexityResult.model_validate(data)
    data = good.model_dump(by_alias=True)
    data["windowNllHex"] = data["windowNllHex"][:1]
    with pytest.raises(ValidationError, match="length"):
        PerplexityResult.model_validate(data)
    data = good.model_dump(by_alias=True)
    data["nllSumHex"] = "inf"
    with pytest.raises(ValidationError):
        PerplexityResult.model_validate(data)


def test_predicate_round_trips_and_refuses_unknown_fields() -> None:
    predicate = make_predicate()
    data = predicate.to_json_dict()
    assert AcceptanceTestPredicate.model_validate(data) == predicate
    assert data["signedAt"] == "2025-01-02T03:04:05Z"
    data["measurement"]["newField"] = 1
    with pytest.raises(ValidationError):
        AcceptanceTestPredicate.model_validate(data)


def test_predicate_needs_expiry_after_signing() -> None:
    data = make_predicate().to_json_dict()
    data["expiresAt"] = data["signedAt"]
    with pytest.raises(ValidationError, match="expiresAt"):
        AcceptanceTestPredicate.model_validate(data)


def test_ratio_requires_baseline() -> None:
    data = make_predicate().to_json_dict()
    data["measurement"]["ratio"] = 1.0
    data["measurement"]["ratioHex"] = float_hex(1.0)
    with pytest.raises(ValidationError, match="baseline"):
        AcceptanceTestPredicate.model_validate(data)


def test_statement_refuses_duplicate_subjects_and_bad_digests() -> None:
    digest = DigestSet(sha256="0" * 64)
    with pytest.raises(ValidationError, match="twice"):
        Statement(subject=[Subject(name="a", digest=digest)] * 2, predicateType="x", predicate={})
    with pytest.raises(ValidationError):
        DigestSet(sha256="ABC")
    with pytest.raises(StatementError, match="duplicate"):
        parse_statement(b'{"_type":"https://in-toto.io/Statement/v1","_type":"https://in-toto.io/Statement/v1"}')
    with pytest.raises(StatementError, match="NaN"):
        parse_statement(b'{"_type":"https://in-toto.io/Statement/v1","x":NaN}')
    with pytest.raises(StatementError, match="JSON object"):
        parse_statement(b"[1]")


def test_subjects_naming_and_splitting() -> None:
    files = {"ucpack.json": "1" * 64, "codec-00001.safetensors": "2" * 64, "sub/dir.json": "3" * 64}
    subjects = build_subjects(files, "4" * 64)
    names = [s.name for s in subjects]
    assert names == ["pack/codec-00001.safetensors", "pack/sub/dir.json", "pack/ucpack.json", "eval-tokens.safetensors"]
    statement = Statement(subject=subjects, predicateType="x", predicate={})
    pack, tokens = split_subjects(statement)
    assert pack == files and tokens == "4" * 64
    with pytest.raises(ValueError):
        build_subjects({"../escape": "1" * 64}, "4" * 64)


@pytest.mark.parametrize("name", ["other.bin", "pack/../x", "pack//x"])
def test_unexpected_subjects_are_refused(name: str) -> None:
    digest = DigestSet(sha256="0" * 64)
    statement = Statement(
        subject=[Subject(name="eval-tokens.safetensors", digest=digest), Subject(name="pack/a", digest=digest), Subject(name=name, digest=digest)],
        predicateType="x",
        predicate={},
    )
    with pytest.raises(StatementError):
        split_subjects(statement)


def test_capture_environment_records_the_run() -> None:
    import torch

    env = capture_environment()
    assert env.device == "cpu" and env.dtype == "float32"
    assert env.threads == torch.get_num_threads()
    assert env.packages["torch"] == torch.__version__
    assert {"transformers", "uc_attest", "numpy"} <= set(env.packages)
    assert env.python.count(".") == 2
    model = torch.nn.Linear(2, 2).to(torch.bfloat16)
    assert capture_environment(model).dtype == "bfloat16"
    data = env.model_dump(by_alias=True, mode="json")
    assert "deterministicAlgorithms" in data and "cpuModel" in data
    assert EnvironmentInfo.model_validate(data) == env
