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
