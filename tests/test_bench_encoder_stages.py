"""bench/encoder_stages.py: what the encoder benchmark keeps between runs is exactly what it would recompute, and is reused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from bench import encoder_mix as mix
from support.paths import REPO
from bench import encoder_stages as stages


def _tiny_bert_statistics() -> tuple[dict[str, torch.nn.Parameter], dict[str, torch.Tensor], int]:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=32)  # fmt: skip
    model = BertModel(config).eval()
    names = ["encoder.layer.0.attention.self.query", "encoder.layer.1.output.dense"]
    weights = {n: model.get_submodule(n).weight for n in names}
    batch = {"input_ids": torch.randint(0, 64, (8, 12)), "attention_mask": torch.ones(8, 12, dtype=torch.int64)}
    hessians = mix.encoder_hessians(model, names, [batch])
    return weights, hessians, int(batch["attention_mask"].sum())


def test_stage_cache_round_trips_tensors_metadata_and_json_without_leaving_temporary_files(tmp_path: Path) -> None:
    cache = stages.StageCache(tmp_path / "c")
    assert cache.tensors("t") is None and cache.json("j") is None
    tensors = {"a.b": torch.arange(6, dtype=torch.float32).reshape(2, 3).t(), "c": torch.ones(1, dtype=torch.float64)}
    cache.save_tensors("t", tensors, {"tokens": "7"})
    cache.save_json("j", {"x": [1, 2.5]})
    loaded, metadata = cache.tensors("t")  # type: ignore[misc]
    assert metadata == {"tokens": "7"}
    assert all(torch.equal(loaded[k], v) and loaded[k].dtype == v.dtype for k, v in tensors.items())
    assert cache.json("j") == {"x": [1, 2.5]}
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["j.json", "t.safetensors"]


def test_a_failed_write_leaves_neither_the_file_nor_a_temporary_one(tmp_path: Path) -> None:
    cache = stages.StageCache(tmp_path)
    with pytest.raises(TypeError):
        cache.save_json("j", {"x": object()})
    with pytest.raises(TypeError, match="metadata"):
        cache.save_tensors("t", {"a": torch.zeros(2)}, {"tokens": 7})  # type: ignore[dict-item]
    assert list(tmp_path.iterdir()) == []


def test_coded_options_are_the_coders_own_bits_and_are_read_back_rather_than_recoded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights, hessians, tokens = _tiny_bert_statistics()
    cache = stages.StageCache(tmp_path)
    options = [(4, 16), (3, 32)]
    coded = stages.coded_options(cache, "k", weights, hessians, tokens, options, workers=2)
    for name, w in weights.items():
        for option in options:
            direct = mix.code_tensor(w.detach(), hessians[name], tokens, *option)
            assert torch.equal(coded[name][option].weight, direct.weight)
            assert coded[name][option].bits_on_disk == direct.bits_on_disk

    def no_pool(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a cached option was coded again")

    monkeypatch.setattr(stages, "ProcessPoolExecutor", no_pool)
    again = stages.coded_options(cache, "k", weights, hessians, tokens, options)
    assert all(torch.equal(again[n][o].weight, coded[n][o].weight) for n in weights for o in options)
    with pytest.raises(AssertionError, match="coded again"):  # another key (another coder or Hessian) is not reused
        stages.coded_options(cache, "other", weights, hessians, tokens, options)


def test_sensitivity_is_measured_once_per_option(tmp_path: Path) -> None:
    cache = stages.StageCache(tmp_path)
    asked: list[list[tuple[int, int]]] = []

    def measure(options: list[tuple[int, int]]) -> dict[str, dict[tuple[int, int], float]]:
        asked.append(options)
        return {"m": {o: o[0] / o[1] for o in options}, "n": {o: 1.0 / o[0] for o in options}}

    first = stages.cached_sensitivity(cache, "s", [(4, 64), (5, 64)], measure)
    second = stages.cached_sensitivity(cache, "s", [(4, 64), (5, 64), (3, 128)], measure)
    assert asked == [[(4, 64)], [(5, 64)], [(3, 128)]]
    assert first == {"m": {(4, 64): 4 / 64, (5, 64): 5 / 64}, "n": {(4, 64): 0.25, (5, 64): 0.2}}
    assert second["m"][(3, 128)] == 3 / 128 and second["n"][(5, 64)] == 0.2


def test_the_coder_digest_changes_with_any_coder_source(tmp_path: Path) -> None:
    for name in stages.CODER_SOURCES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    assert stages.coder_digest(tmp_path) == stages.coder_digest(REPO)
    for name in stages.CODER_SOURCES:
        original = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(original + b"\n")
        assert stages.coder_digest(tmp_path) != stages.coder_digest(REPO), name
        (tmp_path / name).write_bytes(original)
