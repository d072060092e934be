"""Builders shared by the attestation tests: a small, valid statement without a real pack."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

from uc_attest.attest.predicate import (
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
from uc_attest.attest.statement import DigestSet, Statement, Subject
from uc_attest.evaluate.environment import EnvironmentInfo

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


TINY_TEXT = (
    "The pack is verified before it is signed. Every file is hashed and every tensor is rebuilt. "
    "A customer checks the signature offline and measures the same tokens again. "
) * 30


def build_tiny_model(root: Path) -> Path:
    """A two-layer random Llama with a small byte-level BPE tokenizer, saved as a HF directory."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<eos>"])
    tok.train_from_iterator([TINY_TEXT], trainer)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(root, safe_serialization=True)
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>").save_pretrained(root)
    return root


def build_tiny_pack(model_dir: Path, out: Path) -> Path:
    """The tiny model compressed data-free (fast) into a pack."""
    from uc_attest.compress.options import CompressOptions
    from uc_attest.compress.pipeline import compress_model

    compress_model(model_dir, out, CompressOptions(method="datafree", bits=4, block_size=32), progress=False)
    return out
