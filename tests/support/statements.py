"""A small, valid statement and predicate without a real pack (attestation format tests, golden files)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

from uc_attest._internal.attest.predicate import (
    PREDICATE_TYPE,
    TOKENS_SUBJECT,
    AcceptanceTestPredicate,
    DatasetInfo,
    Measurement,
    PackInfo,
    PerplexityResult,
    TensorDigest,
    ToolInfo,
    float_hex,
)
from uc_attest._internal.attest.statement import DigestSet, Statement, Subject
from uc_attest._internal.evaluate.environment import EnvironmentInfo

SIGNED_AT = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def perplexity_result(nlls: list[float], ppl: float = 8.0) -> PerplexityResult:
    """A result with a given perplexity: no libm call, so the golden bytes are the same on every platform."""
    total = float(sum(nlls))
    tokens = 10 * len(nlls)
    return PerplexityResult(
        perplexity=ppl,
        perplexity_hex=float_hex(ppl),
        nll_sum=total,
        nll_sum_hex=float_hex(total),
        predicted_tokens=tokens,
        window_nll=nlls,
        window_nll_hex=[float_hex(v) for v in nlls],
    )


def environment() -> EnvironmentInfo:
    return EnvironmentInfo(
        python="3.11.0",
        python_implementation="CPython",
        os="Linux-test",
        machine="x86_64",
        packages={"torch": "2.13.0", "transformers": "5.24.0", "uc_attest": "0.1.0"},
        device="cpu",
        cpu_model="Test CPU",
        cpu_count=2,
        dtype="float32",
        threads=2,
        interop_threads=2,
        deterministic_algorithms=False,
        deterministic_warn_only=False,
        cudnn_deterministic=False,
        cudnn_benchmark=False,
        float32_matmul_precision="highest",
    )


def make_predicate(signed_at: datetime = SIGNED_AT, valid_days: int = 36500) -> AcceptanceTestPredicate:
    pack = perplexity_result([21.5, 22.25, 20.125], ppl=float.fromhex("0x1.0d0d2ad7f1598p+3"))  # exp(63.875 / 30)
    return AcceptanceTestPredicate(
        tool=ToolInfo(version="0.1.0"),
        pack=PackInfo(
            format="uc-pack",
            format_version="1.0",
            manifest_path="ucpack.json",
            manifest_sha256=sha("manifest"),
            model_type="llama",
            architectures=["LlamaForCausalLM"],
            tensors=[TensorDigest(name="model.embed_tokens.weight", kind="quantized", digest="sha256:" + sha("t0"))],
        ),
        measurement=Measurement(
            method="test",
            dataset=DatasetInfo(sha256=sha("tokens"), token_count=31, text_sha256=sha("text"), text_source="built-in", tokenizer="pack"),
            seq_len=11,
            windows=3,
            pack=pack,
        ),
        environment=environment(),
        signed_at=signed_at,
        expires_at=signed_at + timedelta(days=valid_days),
    )


def make_statement(**kwargs: object) -> Statement:
    predicate = make_predicate(**kwargs)  # type: ignore[arg-type]
    return Statement(
        subject=[
            Subject(name="pack/ucpack.json", digest=DigestSet(sha256=sha("manifest"))),
            Subject(name=TOKENS_SUBJECT, digest=DigestSet(sha256=sha("tokens"))),
        ],
        predicateType=PREDICATE_TYPE,
        predicate=predicate.to_json_dict(),
    )
