"""``uc compress --device``: the calibrated coder's work on one device, the canonical reconstruction everywhere.

No GPU is available to these tests: they run the device path on the CPU (every
tensor the coder touches is placed with ``options.device``) and check that a
CUDA device that is not there is a clear usage error. bench/gpu_smoke.sh runs
the same path on a GPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from support.calibration import fast_options
from support.cli import run_cli
from support.models import make_tiny_model
from uc_attest._internal.compress import calibrated, gptq
from uc_attest._internal.compress.options import CompressOptions
from uc_attest._internal.compress.pipeline import compress_model
from uc_attest._internal.pack.verify import verify_pack

pytestmark = pytest.mark.slow  # the calibrated compressor


def test_the_coder_works_on_the_options_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[torch.device] = []
    real_group, real_prepare = calibrated.gptq_quantize_group, calibrated.prepare_hessian

    def group(weights, params, hessian, **kw):  # type: ignore[no-untyped-def]
        seen.extend(w.device for w in weights)
        if hessian is not None:
            seen.append(hessian.device)
        out = real_group(weights, params, hessian, **kw)
        assert all(enc.codebook.device.type == "cpu" and codes.device.type == "cpu" for enc, codes in out)  # the codec's input
        return out

    def prepare(hessian, cols, damp, act_order, device="cpu"):  # type: ignore[no-untyped-def]
        seen.append(torch.device(device))
        return real_prepare(hessian, cols, damp, act_order, device)

    monkeypatch.setattr(calibrated, "gptq_quantize_group", group)
    monkeypatch.setattr(calibrated, "prepare_hessian", prepare)
    model_dir = make_tiny_model("llama", tmp_path / "model")
    manifest = compress_model(model_dir, tmp_path / "pack", fast_options(tmp_path, device="cpu", tune_epochs=1), progress=False)
    assert seen and {d.type for d in seen} == {"cpu"}
    assert manifest.compression.calibration["device"] == "cpu"
    assert verify_pack(tmp_path / "pack", progress=False).report.ok


def test_device_option_accepts_only_resolved_devices() -> None:
    for good in ("cpu", "cuda:0", "cuda:3"):
        assert CompressOptions(device=good).device == good
    for bad in ("auto", "cuda", "gpu", "cpu:0", "cuda:x", "cuda:0;rm"):
        with pytest.raises(ValueError):
            CompressOptions(device=bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where no CUDA device exists")
def test_cli_refuses_a_cuda_device_that_is_not_there(tmp_path: Path) -> None:
    model_dir = make_tiny_model("llama", tmp_path / "model")
    done = run_cli("uc", "compress", str(model_dir), "-o", str(tmp_path / "pack"), "--device", "cuda:0", "--quiet")
    assert done.rc == 2 and "no CUDA device" in done.err and "Traceback" not in done.err
    assert not (tmp_path / "pack").exists()
    done = run_cli("uc", "compress", str(model_dir), "-o", str(tmp_path / "pack"), "--device", "tpu", "--quiet")
    assert done.rc == 2 and "--device" in done.err


def test_cli_device_cpu_compresses_and_records_it(tmp_path: Path) -> None:
    model_dir = make_tiny_model("llama", tmp_path / "model")
    cal = tmp_path / "cal.txt"
    cal.write_text("Return the value of the object when the key is valid. " * 80)
    done = run_cli("uc", "compress", str(model_dir), "-o", str(tmp_path / "pack"), "--device", "cpu", "--samples", "4",
                        "--seq-len", "32", "--calibration", str(cal), "--quiet")  # fmt: skip
    assert done.rc == 0, done.err
    manifest = json.loads((tmp_path / "pack" / "ucpack.json").read_text())
    assert manifest["compression"]["calibration"]["device"] == "cpu"


def test_sweep_loss_is_the_hessian_error() -> None:
    """The sweep's accumulated loss, used as its error, equals tr(D H D^T) of the codes it chose (W - Q = E U)."""
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(24, 64, generator=gen) * 0.05
    x = torch.randn(400, 64, generator=gen)
    h = x.t() @ x / 400
    prepared = gptq.prepare_hessian(h, 64, 0.025, True)
    codebook, scales16 = gptq.search_scales(w, prepared.diag, 4, 32, torch.bfloat16, 0)
    scales_full = torch.repeat_interleave(scales16.to(torch.float32), 32, dim=1)
    assert prepared.hinv is not None
    codes, losses = gptq._sweep([w], [codebook], [scales_full], prepared.hinv, prepared.perm, torch.bfloat16)
    exact = gptq.hessian_error(w, gptq._dequant(codebook, codes[0], scales_full, torch.bfloat16), prepared.h)
    assert losses[0] == pytest.approx(exact, rel=1e-3)
