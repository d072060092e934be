"""``uc eval --reference``: KL(reference || model) per token beside perplexity (method uc-kl-v1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from support.cli import run_cli
from support.models import make_tiny_model
from support.pack_edit import copy_with_a_flipped_shard_byte
from uc_attest._internal.compress.options import CompressOptions
from uc_attest._internal.compress.pipeline import compress_model
from uc_attest._internal.errors import VerificationError
from uc_attest._internal.evaluate.kl import _quantile, token_kl
from uc_attest._internal.evaluate.measure import measure_against_reference, measure_any
from uc_attest._internal.evaluate.tokens import save_token_file
from uc_attest._internal.evaluate.settings import EvalSettings

IDS = torch.randint(0, 160, (3 * 24 + 5,), generator=torch.Generator().manual_seed(11))


@pytest.fixture(scope="module")
def model_and_pack(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("kl")
    model_dir = make_tiny_model("llama", root / "model")
    compress_model(model_dir, root / "pack", CompressOptions(method="datafree", bits=3), progress=False)
    return model_dir, root / "pack"


def test_token_kl_is_the_definition() -> None:
    gen = torch.Generator().manual_seed(0)
    ref, mod = torch.randn(7, 50, generator=gen), torch.randn(7, 50, generator=gen)
    p = torch.softmax(ref.double(), -1)
    expected = (p * (torch.log_softmax(ref.double(), -1) - torch.log_softmax(mod.double(), -1))).sum(-1)
    assert torch.allclose(token_kl(ref, mod).double(), expected, atol=1e-5)
    assert torch.all(token_kl(ref, ref) == 0)


def test_quantile_matches_numpy_interpolation() -> None:
    values = torch.arange(101, dtype=torch.float32)
    assert _quantile(values, 0.99) == pytest.approx(99.0)
    assert _quantile(torch.tensor([0.0, 10.0]), 0.99) == pytest.approx(9.9)


def test_a_model_against_itself_has_zero_kl(model_and_pack: tuple[Path, Path]) -> None:
    model_dir, _pack = model_and_pack
    compared = measure_against_reference(model_dir, model_dir, IDS, EvalSettings(seq_len=24, max_windows=None, progress=False))
    assert compared.kl.mean == 0.0 and compared.kl.p99 == 0.0 and compared.kl.perplexity_ratio == 1.0
    assert compared.kl.windows == 3 and compared.kl.tokens == 3 * 23 and len(compared.kl.per_window) == 3


def test_a_coded_pack_has_positive_kl_and_its_perplexity_is_the_plain_evaluations(model_and_pack: tuple[Path, Path]) -> None:
    model_dir, pack = model_and_pack
    compared = measure_against_reference(pack, model_dir, IDS, EvalSettings(seq_len=24, max_windows=None, progress=False))
    kl = compared.kl
    assert kl.mean > 0 and kl.max >= kl.p99 >= 0
    assert kl.mean == pytest.approx(sum(w.mean for w in kl.per_window) / 3)
    plain = measure_any(pack, IDS, EvalSettings(seq_len=24, max_windows=None, progress=False)).result
    assert compared.result.window_nll_hex == plain.window_nll_hex  # the same windows, the same arithmetic
    reference = measure_any(model_dir, IDS, EvalSettings(seq_len=24, max_windows=None, progress=False)).result
    assert compared.reference.window_nll_hex == reference.window_nll_hex
    whole = measure_against_reference(pack, model_dir, IDS, EvalSettings(seq_len=24, max_windows=None, streaming=False, progress=False))
    assert whole.kl.mean == pytest.approx(kl.mean, rel=1e-5)


def test_a_tampered_pack_is_not_compared(model_and_pack: tuple[Path, Path], tmp_path: Path) -> None:
    """Forgery: a pack whose shard was altered must not yield a KL figure (verification comes first)."""
    model_dir, pack = model_and_pack
    bad = tmp_path / "bad"
    copy_with_a_flipped_shard_byte(pack, bad)
    with pytest.raises(VerificationError):
        measure_against_reference(bad, model_dir, IDS, EvalSettings(seq_len=24, max_windows=None, progress=False))


def test_cli_reports_kl_and_refuses_a_missing_reference(model_and_pack: tuple[Path, Path], tmp_path: Path) -> None:
    model_dir, pack = model_and_pack
    tokens = tmp_path / "t.safetensors"
    save_token_file(tokens, IDS, {})
    done = run_cli("uc", "eval", str(pack), "--tokens", str(tokens), "--seq-len", "24", "--reference", str(model_dir), "--quiet")
    assert done.rc == 0, done.err
    assert "KL(reference || model) mean" in done.out and "p99" in done.out
    done = run_cli("uc", "eval", str(pack), "--tokens", str(tokens), "--seq-len", "24", "--reference", str(model_dir), "--quiet", "--json")
    doc = json.loads(done.out)
    assert doc["kl"]["windows"] == 3 and len(doc["kl"]["per_window"]) == 3 and doc["kl"]["mean"] > 0
    missing = run_cli("uc", "eval", str(pack), "--tokens", str(tokens), "--seq-len", "24", "--reference", str(tmp_path / "nope"))
    assert missing.rc == 2 and "reference" in missing.err and "Traceback" not in missing.err


def test_models_of_different_vocabularies_are_a_usage_error() -> None:
    from uc_attest._internal.errors import UsageError

    with pytest.raises(UsageError, match="vocabulary"):
        token_kl(torch.zeros(3, 10), torch.zeros(3, 12))
