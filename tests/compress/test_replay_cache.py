"""Replaying finished sub-modules and sharing one statistic per input: faster, and the very same pack."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from support.calibration import fast_options
from support.models import make_tiny_model
from uc_attest._internal.compress import calibrated, hessian
from uc_attest._internal.compress.pipeline import compress_model
from uc_attest._internal.compress.replay_cache import ReplayCache, TailInputs


def _pack_bytes(pack: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(pack.iterdir())}


@pytest.mark.slow  # the calibrated compressor
@pytest.mark.parametrize("arch", ["llama", "mixtral", "mamba", "gpt2", "qwen3_moe"])
def test_replay_and_shared_statistics_give_the_pack_of_full_recomputation(
    arch: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = make_tiny_model(arch, tmp_path / "model")
    # 100 windows of 48 tokens: three calibration batches (42, 42, 16), so replays are keyed by batch
    opts = fast_options(tmp_path, samples=100, calibration_dtype="float32")
    hits: list[int] = []
    tail_hits: list[int] = []
    original_clear = ReplayCache.clear

    def counting_clear(self: ReplayCache) -> None:
        hits.append(self.hits)
        tail_hits.append(self.tail_hits)
        original_clear(self)

    monkeypatch.setattr(ReplayCache, "clear", counting_clear)
    compress_model(model_dir, tmp_path / "fast", opts, progress=False)
    monkeypatch.undo()

    # reference: no replays, and every unit of a group computes and keeps its own statistic
    original_attach = hessian.attach
    monkeypatch.setattr(calibrated.BlockCoder, "finished_children", lambda self: [])
    monkeypatch.setattr(calibrated, "attach", lambda units, stats, stop_when_done, shared_input=False, keep=None:
                        original_attach(units, stats, stop_when_done, shared_input=False))  # fmt: skip
    compress_model(model_dir, tmp_path / "slow", opts, progress=False)

    assert _pack_bytes(tmp_path / "fast") == _pack_bytes(tmp_path / "slow")
    if arch in ("llama", "gpt2"):  # attention is finished before the MLP's groups: replayed from then on
        assert all(h > 0 for h in hits), hits
        # and its first output after o_proj / c_proj, and the MLP's on the block's last run, came from the kept
        # input of that last map: two children, every batch but the first (which checks the shortcut)
        assert all(h == 2 * (3 - 1) for h in tail_hits), tail_hits


class _Doubler(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        self.calls += 1
        return x * 2, None


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = _Doubler()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)[0]
        out += x  # in place on the child's output, as residual adds may be
        return out


def _run(block: _Block, cache: ReplayCache, batches: list[torch.Tensor]) -> list[torch.Tensor]:
    outs = []
    with cache.replaying(["inner"]):
        for i, x in enumerate(batches):
            cache.start_batch(i)
            outs.append(block(x))
    return outs


def test_replays_survive_in_place_changes_and_skip_the_child() -> None:
    block, batches = _Block(), [torch.randn(3, 4), torch.randn(2, 4)]
    cache = ReplayCache(block, budget_bytes=10**6)
    first = _run(block, cache, batches)
    second = _run(block, cache, batches)
    assert block.inner.calls == 2 and cache.hits == 2
    for a, b, x in zip(first, second, batches):
        assert torch.equal(a, b) and torch.equal(a, 3 * x)
    assert "forward" not in block.inner.__dict__  # the wrapper is gone after the context


def test_a_child_over_the_budget_is_recomputed_and_keeps_nothing() -> None:
    block, batches = _Block(), [torch.randn(3, 4), torch.randn(3, 4)]
    cache = ReplayCache(block, budget_bytes=3 * 4 * 4)  # room for one batch's output, not two
    _run(block, cache, batches)
    _run(block, cache, batches)
    assert block.inner.calls == 4 and cache.hits == 0
    assert cache.refused == {"inner"} and cache.used_bytes == 0 and not cache.entries


def test_a_replay_for_a_different_input_fails_loudly() -> None:
    block = _Block()
    cache = ReplayCache(block, budget_bytes=10**6)
    _run(block, cache, [torch.zeros(3, 4)])
    with pytest.raises(RuntimeError, match="different input"):
        _run(block, cache, [torch.ones(3, 4)])


def test_shared_statistic_equals_each_units_own() -> None:
    torch.manual_seed(0)
    q, k = nn.Linear(8, 4), nn.Linear(8, 6)
    x = torch.randn(5, 8)
    own = {"q": hessian.UnitStats(), "k": hessian.UnitStats()}
    shared = {"q": hessian.UnitStats(), "k": hessian.UnitStats()}
    for stats, flag in ((own, False), (shared, True)):
        handles = hessian.attach({"q": q, "k": k}, stats, stop_when_done=False, shared_input=flag)
        q(x), k(x)
        for h in handles:
            h.remove()
    for name in ("q", "k"):
        assert own[name].tokens == shared[name].tokens == 5
        assert torch.equal(own[name].h, shared[name].h)
        assert torch.equal(own[name].h, x.t() @ x)


class _Tailed(nn.Module):
    """A child whose output is its last map's output, or (``extra``) that output plus one."""

    def __init__(self, extra: bool) -> None:
        super().__init__()
        self.pre, self.last, self.extra, self.calls = nn.Linear(4, 4), nn.Linear(4, 4), extra, 0

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        self.calls += 1
        out = self.last(torch.tanh(self.pre(x)))
        return (out + 1 if self.extra else out), None


class _TailBlock(nn.Module):
    def __init__(self, extra: bool) -> None:
        super().__init__()
        self.inner = _Tailed(extra)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)[0] + x


@pytest.mark.parametrize("extra", [False, True])
def test_a_childs_first_replay_comes_from_its_last_maps_kept_input_only_where_that_is_exact(extra: bool) -> None:
    torch.manual_seed(1)
    block, batches = _TailBlock(extra), [torch.randn(3, 4), torch.randn(3, 4), torch.randn(2, 4)]
    want = [block(x) for x in batches]
    tail = TailInputs(budget_bytes=10**6)
    for i, x in enumerate(batches):  # what the last map's statistic hook keeps
        tail.keep(i, torch.tanh(block.inner.pre(x)))
    block.inner.calls = 0
    cache = ReplayCache(block, budget_bytes=10**6)
    cache.set_tail("inner", block.inner.last, tail)
    with torch.no_grad():
        got = _run(block, cache, batches)  # type: ignore[arg-type]
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b)
    # the first batch checks the shortcut in full; it holds for the plain child and is dropped for the other
    assert (block.inner.calls, cache.tail_hits) == ((1, 2) if not extra else (3, 0))
    assert ("inner" in cache.tails) is not extra


def test_kept_inputs_over_their_budget_keep_nothing_and_set_no_shortcut() -> None:
    tail = TailInputs(budget_bytes=3 * 4 * 4)  # one [3, 4] float32 batch, not two
    tail.keep(0, torch.zeros(3, 4))
    tail.keep(1, torch.zeros(3, 4))
    tail.keep(2, torch.zeros(1, 4))
    assert tail.over_budget and not tail.inputs
    cache = ReplayCache(_TailBlock(False), budget_bytes=10**6)
    cache.set_tail("inner", nn.Linear(4, 4), tail)
    assert not cache.tails
