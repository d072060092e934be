"""Codec parameters of one quantized tensor, as recorded in the manifest."""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

# Reconstruction dtypes a pack may declare, with their torch names.
RECONSTRUCTION_DTYPES: tuple[str, ...] = ("bfloat16", "float16", "float32")

# Block scales are stored in float16: 16 bits per block of 64 weights is 0.25 bit
# per weight, which keeps a 5-bit pack under 5.3 effective bits. Every float16 is
# exactly representable in float32, so the widening before the multiply is exact.
SCALE_DTYPE: Final = "float16"


class CodecParams(BaseModel):
    """How one tensor was coded: enough to reconstruct it with no other knowledge."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scheme: Literal["codebook-blockscale-v1"] = "codebook-blockscale-v1"
    bits: int = Field(ge=2, le=8, description="bits per code; the codebook has 2**bits entries")
    block_size: int = Field(ge=1, le=1 << 20, description="weights per scale along the block axis")
    block_axis: int = Field(ge=0, description="axis of the tensor along which blocks run (its input dimension)")
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    scale_dtype: Literal["float16"] = SCALE_DTYPE
