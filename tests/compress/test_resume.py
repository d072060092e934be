"""An interrupted calibrated compression resumes from its last finished block, byte-identically."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from support.calibration import fast_options
from support.models import make_tiny_model
from uc_attest._internal.compress import resume
from uc_attest._internal.compress.pipeline import compress_model


class Interrupted(Exception):
    pass


def _files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


def _spy_on_resume(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """``{"done": n}`` once the compressor starts: how many finished blocks ``WorkDir.start`` resumed from."""
    seen: dict[str, int] = {}
    original_start = resume.WorkDir.start

    def spy_start(self, resume_flag):  # type: ignore[no-untyped-def]
        seen["done"] = original_start(self, resume_flag)
        return seen["done"]

    monkeypatch.setattr(resume.WorkDir, "start", spy_start)
    return seen


@pytest.mark.slow  # the calibrated compressor
@pytest.mark.parametrize(("arch", "tune_epochs", "dead_expert"), [("llama", 0, False), ("mixtral", 0, False), ("gpt2", 2, False),
                                                                  ("mixtral", 0, True)])  # fmt: skip
def test_resume_is_byte_identical(arch: str, tune_epochs: int, dead_expert: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With tuning, the full-precision stream is persisted too; fallbacks of the finished blocks stay in the manifest."""
    from support.models import COMMON  # noqa: F401 - the tiny models have two blocks

    if dead_expert:  # expert 0 never routed: its tensors get a fallback, recorded in the manifest
        from uc_attest._internal.compress import hessian

        routed = hessian._expert_inputs

        def never_expert_zero(module, args, kwargs):  # type: ignore[no-untyped-def]
            hidden, top_k = routed(module, args, kwargs)
            return hidden, torch.where(top_k == 0, torch.full_like(top_k, 1), top_k)

        monkeypatch.setattr(hessian, "_expert_inputs", never_expert_zero)

    model_dir = make_tiny_model(arch, tmp_path / "model")
    opts = fast_options(tmp_path, tune_epochs=tune_epochs)
    compress_model(model_dir, tmp_path / "full", opts, progress=False)

    original = resume.WorkDir.finish_block
    calls = {"n": 0}

    def interrupt_after_first(self, index, *args, **kwargs):  # type: ignore[no-untyped-def]
        if calls["n"] == 1:
            raise Interrupted
        calls["n"] += 1
        return original(self, index, *args, **kwargs)

    monkeypatch.setattr(resume.WorkDir, "finish_block", interrupt_after_first)
    with pytest.raises(Interrupted):
        compress_model(model_dir, tmp_path / "out", opts, progress=False)
    work = tmp_path / "out.partial-work"
    assert (work / "state.json").is_file() and (work / "block-00000.safetensors").is_file()
    assert not (tmp_path / "out").exists()
    monkeypatch.setattr(resume.WorkDir, "finish_block", original)

    resumed_from = _spy_on_resume(monkeypatch)
    manifest = compress_model(model_dir, tmp_path / "out", opts.model_copy(update={"resume": True}), progress=False)
    assert resumed_from["done"] == 1
    assert _files(tmp_path / "out") == _files(tmp_path / "full")
    assert not work.exists()
    assert manifest.compression.calibration["blocks"] == 2
    if dead_expert:
        assert "model.layers.0.block_sparse_moe.experts.0.w2.weight" in str(manifest.compression.calibration["fallbacks"])


@pytest.mark.slow  # the calibrated compressor
def test_resume_ignores_a_different_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model_dir = make_tiny_model("llama", tmp_path / "model")
    work = tmp_path / "out.partial-work"
    work.mkdir()
    (work / "state.json").write_text('{"version": 1, "fingerprint": "other", "completed": 1}')
    seen = _spy_on_resume(monkeypatch)
    compress_model(model_dir, tmp_path / "out", fast_options(tmp_path, resume=True), progress=False)
    assert seen["done"] == 0


def _finish_one(work: resume.WorkDir, index: int) -> torch.Tensor:
    hidden = torch.arange(12, dtype=torch.float32).reshape(3, 4) + index
    work.finish_block(index, {}, {"model.norm.weight": (torch.ones(4), "norm")}, hidden)
    return hidden


def test_block_files_are_written_in_order_in_the_background(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Block file, then activations, then state.json (last, so a crash never advances the state past missing files)."""
    written: list[str] = []
    original = resume.write_bytes_atomic

    def spy(path, data, *args, **kwargs):  # type: ignore[no-untyped-def]
        written.append(Path(path).name)
        original(path, data, *args, **kwargs)

    monkeypatch.setattr(resume, "write_bytes_atomic", spy)
    work = resume.WorkDir(tmp_path / "out", "fp")
    assert work.start(False) == 0
    written.clear()
    _finish_one(work, 0)
    hidden = _finish_one(work, 1)
    work.flush()
    assert written == ["block-00000.safetensors", "inputs-00001.safetensors", "state.json",
                       "block-00001.safetensors", "inputs-00002.safetensors", "state.json"]  # fmt: skip
    assert sorted(p.name for p in work.root.iterdir()) == ["block-00000.safetensors", "block-00001.safetensors",
                                                           "inputs-00002.safetensors", "state.json"]  # fmt: skip
    assert torch.equal(work.load_hidden(), hidden)
    assert [name for name, *_ in work.read_block(1)] == ["model.norm.weight"]
    assert resume.WorkDir(tmp_path / "out", "fp").start(True) == 2


def test_a_failed_background_write_is_raised_and_leaves_the_state_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from uc_attest._internal.errors import UsageError

    work = resume.WorkDir(tmp_path / "out", "fp")
    work.start(False)
    _finish_one(work, 0)
    work.flush()
    original = resume.write_bytes_atomic

    def disk_full(path, data, *args, **kwargs):  # type: ignore[no-untyped-def]
        if Path(path).name == "inputs-00002.safetensors":
            raise UsageError(f"cannot write {path}: No space left on device")
        original(path, data, *args, **kwargs)

    monkeypatch.setattr(resume, "write_bytes_atomic", disk_full)
    _finish_one(work, 1)  # returns at once: the write runs in the background
    with pytest.raises(UsageError, match="No space left"):
        work.flush()
    work.flush()  # raised once, then the writer is idle again
    # state.json still says one block: a resumed run redoes block 1 from block 0's activations
    assert resume.WorkDir(tmp_path / "out", "fp").start(True) == 1


def test_an_interruption_before_the_state_resumes_from_the_right_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Block 1's files written, state.json not: block 1 is redone from block 0's outputs, never from its own."""
    work = resume.WorkDir(tmp_path / "out", "fp")
    work.start(False)
    inputs_of_block_1 = _finish_one(work, 0)
    work.flush()
    original = resume.write_bytes_atomic

    def killed(path, data, *args, **kwargs):  # type: ignore[no-untyped-def]
        if Path(path).name == "state.json":
            raise KeyboardInterrupt
        original(path, data, *args, **kwargs)

    monkeypatch.setattr(resume, "write_bytes_atomic", killed)
    _finish_one(work, 1)
    with pytest.raises(KeyboardInterrupt):
        work.flush()
    monkeypatch.setattr(resume, "write_bytes_atomic", original)
    again = resume.WorkDir(tmp_path / "out", "fp")
    assert again.start(True) == 1
    assert torch.equal(again.load_hidden(), inputs_of_block_1)
