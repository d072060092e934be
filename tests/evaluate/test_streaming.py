"""Streaming evaluation (one block resident) gives the whole-model NLL of every window, bit for bit.

On every tiny architecture (dense, tied embeddings, MoE, Mamba, hybrid Jamba),
for a pack (weights from the verified pack, each block rebuilt again and pinned
to its verified digest) and for the uncompressed model directory (block by
block from safetensors).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from support.models import ARCHITECTURES, make_tiny_model
from uc_attest._internal.compress.options import CompressOptions
from uc_attest._internal.compress.pipeline import compress_model
from uc_attest._internal.errors import VerificationError
from uc_attest._internal.evaluate.measure import measure_model_dir, measure_pack
from uc_attest._internal.pack.verify import verify_pack
from uc_attest._internal.evaluate.settings import EvalSettings

FAST = CompressOptions(method="datafree")
IDS = torch.randint(0, 160, (3 * 24 + 5,), generator=torch.Generator().manual_seed(7))


@pytest.fixture(scope="module", params=ARCHITECTURES)
def model_and_pack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    root = tmp_path_factory.mktemp(request.param)
    model_dir = make_tiny_model(request.param, root / "model")
    compress_model(model_dir, root / "pack", FAST, progress=False)
    return request.param, model_dir, root / "pack"


def test_streaming_equals_whole_model_for_a_pack(model_and_pack: tuple[str, Path, Path]) -> None:
    _arch, _model_dir, pack = model_and_pack
    verified = verify_pack(pack, progress=False, architecture=True)
    assert verified.report.ok, verified.report.failures
    whole = measure_pack(verified, IDS, EvalSettings(seq_len=24, max_windows=None, streaming=False, progress=False)).result
    streamed = measure_pack(verified, IDS, EvalSettings(seq_len=24, max_windows=None, streaming=True, progress=False)).result
    assert whole.windows == streamed.windows == 3
    assert streamed.window_nll_hex == whole.window_nll_hex
    assert streamed.perplexity_hex == whole.perplexity_hex


def test_streaming_equals_whole_model_for_a_model_directory(model_and_pack: tuple[str, Path, Path]) -> None:
    _arch, model_dir, _pack = model_and_pack
    whole = measure_model_dir(model_dir, IDS, EvalSettings(seq_len=24, max_windows=2, streaming=False, progress=False)).result
    streamed = measure_model_dir(model_dir, IDS, EvalSettings(seq_len=24, max_windows=2, streaming=True, progress=False)).result
    assert streamed.window_nll_hex == whole.window_nll_hex and streamed.windows == 2


def test_a_shard_swapped_after_verification_is_refused_by_the_streaming_path(tmp_path: Path) -> None:
    """Forgery: verify pack A, then put pack B's shard (same layout, other weights) in its place; streaming must not measure it."""
    model_a = make_tiny_model("llama", tmp_path / "a", seed=0)
    model_b = make_tiny_model("llama", tmp_path / "b", seed=1)
    compress_model(model_a, tmp_path / "pack-a", FAST, progress=False)
    compress_model(model_b, tmp_path / "pack-b", FAST, progress=False)
    verified = verify_pack(tmp_path / "pack-a", progress=False)
    assert verified.report.ok
    for shard in (tmp_path / "pack-b").glob("*.safetensors"):
        shutil.copyfile(shard, tmp_path / "pack-a" / shard.name)
    with pytest.raises(VerificationError, match="changed after it was verified|no longer|cannot be rebuilt"):
        measure_pack(verified, IDS, EvalSettings(seq_len=24, max_windows=None, streaming=True, progress=False))
