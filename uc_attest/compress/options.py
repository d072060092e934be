"""Options of ``uc compress``, recorded in the manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class CompressOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bits: int = Field(5, ge=2, le=8)
    block_size: int = Field(64, ge=8, le=4096)
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    method: Literal["calibrated", "datafree"] = "calibrated"
    samples: int = Field(128, ge=1)
    seq_len: int = Field(512, ge=8)
    calibration_file: Path | None = None
    act_order: bool = True
    damp: float = Field(0.01, gt=0, lt=1)
    calibration_dtype: Literal["bfloat16", "float32"] = "bfloat16"
    resume: bool = False
    shard_bytes: int = 256 * 1024 * 1024
    source_note: str = ""
    seed: int = 0
