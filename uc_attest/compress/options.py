"""Options of ``uc compress``, recorded in the manifest."""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import UsageError


class CompressOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bits: int = Field(5, ge=2, le=8)
    # per-tensor widths: checkpoint-key glob -> bits; globs of different widths must not share a tensor (see bits_for_key)
    bits_for: dict[str, int] = {}
    block_size: int = Field(64, ge=8, le=4096)
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    method: Literal["calibrated", "datafree"] = "calibrated"
    samples: int = Field(128, ge=1)
    seq_len: int = Field(512, ge=8)
    calibration_file: Path | None = None
    act_order: bool = True
    damp: float = Field(0.01, gt=0, lt=1)
    # "auto": bfloat16 where the CPU multiplies bf16 natively, else float32 (see calibrated.resolve_calibration_dtype)
    calibration_dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    resume: bool = False
    shard_bytes: int = 256 * 1024 * 1024
    source_note: str = ""
    seed: int = 0

    @field_validator("bits_for")
    @classmethod
    def _widths_in_range(cls, value: dict[str, int]) -> dict[str, int]:
        for pattern, bits in value.items():
            if not 2 <= bits <= 8:
                raise ValueError(f"{pattern}: bits must be in 2..8, got {bits}")
        return value

    def bits_for_key(self, key: str) -> int:
        """Code width of one checkpoint tensor: that of the ``bits_for`` globs that match it, else ``bits``.

        Why per tensor: the output error a weight's rounding causes is far from
        uniform across a model (measured on SmolLM2: restoring the attention
        key projections, 3 % of the weights, recovers a fifth of the perplexity
        loss; restoring gate_proj, 25 % of them, recovers 2 %), so a fixed
        budget of bits is better spent unevenly, as llama.cpp's K-quant mixes do.
        """
        widths = {bits for pattern, bits in self.bits_for.items() if fnmatch.fnmatchcase(key, pattern)}
        if len(widths) > 1:
            # the manifest records the rule with its keys sorted: an order-dependent rule would be ambiguous there
            raise UsageError(f"{key}: matched by --bits-for globs of different widths ({sorted(widths)})")
        return widths.pop() if widths else self.bits
