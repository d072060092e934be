"""bench/encoder_mix.py: the width allocator (exact against brute force, never over budget), the installer and the sensitivity replay."""

from __future__ import annotations

import importlib.util
import itertools
import random
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _mix():
    spec = importlib.util.spec_from_file_location("encoder_mix", REPO / "bench" / "encoder_mix.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("encoder_mix", module)  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def _instance(seed: int) -> tuple[dict[str, dict[int, float]], dict[str, dict[int, int]], int]:
    """Random tensors whose damage falls with width, costing width * numel + a per-width overhead."""
    rng = random.Random(seed)
    sizes = {f"t{i}": rng.choice([64, 256, 1024]) for i in range(5)}
    sensitivity = {n: {b: rng.random() * 2.0 ** -b for b in (3, 4, 5, 6)} for n in sizes}
    cost = {n: {b: b * size + rng.randrange(0, 64) for b in (3, 4, 5, 6)} for n, size in sizes.items()}
    return sensitivity, cost, sum(sizes.values())


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("budget", [3.5, 4.3, 5.3])
def test_allocate_matches_brute_force_and_keeps_the_budget(seed: int, budget: float) -> None:
    mix = _mix()
    sensitivity, cost, weights = _instance(seed)
    names = sorted(sensitivity)
    widths = mix.allocate(sensitivity, cost, weights, budget, steps=20000)
    spent = sum(cost[n][widths[n]] for n in names)
    assert spent <= budget * weights
    # costs are rounded up to whole units of the budget: the choice is optimal among the mixes that stay one unit
    # per tensor inside it (and may be better than that, never over the budget)
    unit = budget * weights / 20000
    margin = [dict(zip(names, combo)) for combo in itertools.product((3, 4, 5, 6), repeat=len(names))
              if sum(cost[n][b] for n, b in zip(names, combo)) <= budget * weights - len(names) * unit]  # fmt: skip
    assert margin, "instance too tight for the test"
    best = min(sum(sensitivity[n][c[n]] for n in names) for c in margin)
    assert sum(sensitivity[n][widths[n]] for n in names) <= best + 1e-12

def test_allocate_refuses_a_budget_nothing_fits() -> None:
    mix = _mix()
    sensitivity, cost, weights = _instance(0)
    with pytest.raises(ValueError, match="no width mix fits"):
        mix.allocate(sensitivity, cost, weights, 2.0)


def test_install_copies_the_chosen_widths_and_counts_their_bits() -> None:
    mix = _mix()
    params = {"a": torch.nn.Parameter(torch.zeros(2, 4)), "b": torch.nn.Parameter(torch.zeros(4, 4))}
    coded = {n: {b: mix.CodedTensor(torch.full(p.shape, float(b)), b * p.numel() + 7) for b in (3, 5)} for n, p in params.items()}
    bpw = mix.install(params, coded, {"a": 3, "b": 5})
    assert torch.equal(params["a"].data, torch.full((2, 4), 3.0)) and torch.equal(params["b"].data, torch.full((4, 4), 5.0))
    assert bpw == pytest.approx((3 * 8 + 7 + 5 * 16 + 7) / 24)


def _tiny_bert() -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=32)  # fmt: skip
    model = BertModel(config).eval()
    ids = torch.randint(0, 64, (4, 10))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # padding: pooling and attention masks must survive the replay
    return model, {"input_ids": ids, "attention_mask": mask}


def _full_embedding(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        out = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return (out * mask).sum(1) / mask.sum(1)


def test_suffix_replay_equals_the_full_forward_after_a_change_in_a_later_layer() -> None:
    mix = _mix()
    model, batch = _tiny_bert()
    suffix = mix.SuffixEmbedder(model, batch)
    assert torch.equal(suffix.embed_from(0), _full_embedding(model, batch))
    name = "encoder.layer.1.attention.self.query.weight"
    assert suffix.layer_of(name) == 1 and suffix.layer_of("embeddings.word_embeddings.weight") == 0
    with torch.no_grad():
        model.get_parameter(name).mul_(0.5)
    assert torch.equal(suffix.embed_from(1), _full_embedding(model, batch))
    assert not torch.equal(suffix.embed_from(1), suffix.embed_from(2))  # layer 1's change is seen from 1, not from 2


def test_sensitivity_is_the_damage_of_each_width_alone_and_restores_the_weights() -> None:
    mix = _mix()
    model, batch = _tiny_bert()
    reference = _full_embedding(model, batch)
    weights = {n: model.get_parameter(n) for n in ("encoder.layer.0.output.dense.weight", "encoder.layer.2.intermediate.dense.weight")}
    before = {n: p.detach().clone() for n, p in weights.items()}
    noise = {n: torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) for n, p in weights.items()}
    coded = {n: {b: mix.CodedTensor(p.detach() + 0.1 * (7 - b) * noise[n], b * p.numel()) for b in (3, 6)} for n, p in weights.items()}
    halves = [{k: v[:2] for k, v in batch.items()}, {k: v[2:] for k, v in batch.items()}]
    sensitivity = mix.measure_sensitivity(model, weights, coded, halves)  # one damage over both batches
    for n, p in weights.items():
        assert torch.equal(p.detach(), before[n])
        for b, ct in coded[n].items():
            with torch.no_grad():
                p.copy_(ct.weight)
            cos = torch.nn.functional.cosine_similarity(reference, _full_embedding(model, batch), dim=-1)
            assert sensitivity[n][b] == pytest.approx(float(1 - cos.mean()), abs=1e-7)
            with torch.no_grad():
                p.copy_(before[n])
        assert sensitivity[n][3] > sensitivity[n][6] > 0



@pytest.mark.parametrize("seed", range(4))
def test_allocate_chooses_among_width_and_block_pairs(seed: int) -> None:
    """Options are (bits, block) pairs: a larger block costs fewer scale bits and may buy a wider code elsewhere."""
    mix = _mix()
    rng = random.Random(seed)
    sizes = {f"t{i}": rng.choice([256, 1024]) for i in range(4)}
    options = [(b, blk) for b in (4, 5, 6) for blk in (64, 128)]
    cost = {n: {(b, blk): size * b + 16 * size // blk for b, blk in options} for n, size in sizes.items()}
    sensitivity = {n: {(b, blk): rng.random() * 2.0 ** -b * (1.1 if blk == 128 else 1.0) for b, blk in options} for n in sizes}
    weights = sum(sizes.values())
    chosen = mix.allocate(sensitivity, cost, weights, 5.1, steps=20000)
    names = sorted(sizes)
    assert sum(cost[n][chosen[n]] for n in names) <= 5.1 * weights
    unit = 5.1 * weights / 20000
    fits = [dict(zip(names, combo)) for combo in itertools.product(options, repeat=len(names))
            if sum(cost[n][o] for n, o in zip(names, combo)) <= 5.1 * weights - len(names) * unit]  # fmt: skip
    best = min(sum(sensitivity[n][c[n]] for n in names) for c in fits)
    assert sum(sensitivity[n][chosen[n]] for n in names) <= best + 1e-12


def test_tuning_the_encoder_brings_its_embeddings_closer_and_installs_canonical_weights() -> None:
    """tune_encoder: each layer tuned against the original's outputs; the model holds the tuned codec state's weights."""
    import copy

    from uc_attest._internal.codec.encoded import reconstruct_encoded

    mix = _mix()
    original, batch = _tiny_bert()
    names = [n for n, m in original.named_modules() if isinstance(m, torch.nn.Linear) and n.startswith("encoder.")]
    hessians = mix.encoder_hessians(original, names, [batch])
    tokens = int(batch["attention_mask"].sum())
    model = copy.deepcopy(original)
    encoded = {n: mix.encode_option(original.get_submodule(n).weight.detach(), hessians[n], tokens, 3, 16) for n in names}
    with torch.no_grad():
        for n, (enc, codes) in encoded.items():
            model.get_submodule(n).weight.copy_(reconstruct_encoded(enc, codes))
    reference = _full_embedding(original, batch)

    def damage() -> float:
        return float(1 - torch.nn.functional.cosine_similarity(reference, _full_embedding(model, batch), dim=-1).mean())

    before = damage()
    halves = [{k: v[:2] for k, v in batch.items()}, {k: v[2:] for k, v in batch.items()}]
    report = mix.tune_encoder(original, model, encoded, halves, epochs=10)
    assert len(report) == original.config.num_hidden_layers
    assert all(after <= err for err, after, kept in report if kept) and any(kept for *_, kept in report)
    assert damage() < before
    # the codes stayed: within one row's block of 16, weights that shared a code still share one value
    for n, (_enc, codes) in encoded.items():
        weight = model.get_submodule(n).weight.detach()
        assert not torch.equal(weight, original.get_submodule(n).weight.detach())
        for row in range(0, weight.shape[0], 7):
            for start in range(0, weight.shape[1], 16):
                c, w = codes[row, start : start + 16].long(), weight[row, start : start + 16]
                same = c[:, None] == c[None, :]
                assert torch.equal(w[:, None].expand(-1, w.numel())[same], w[None, :].expand(w.numel(), -1)[same])
