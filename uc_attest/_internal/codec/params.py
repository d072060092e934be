"""Codec parameters of one quantized tensor, as recorded in the manifest."""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, field_validator, model_serializer

# Reconstruction dtypes a pack may declare, with their torch names.
RECONSTRUCTION_DTYPES: tuple[str, ...] = ("bfloat16", "float16", "float32")

# Block scales are stored in float16: 16 bits per block of 64 weights is 0.25 bit
# per weight, which keeps a 5-bit pack under 5.3 effective bits. Every float16 is
# exactly representable in float32, so the widening before the multiply is exact.
SCALE_DTYPE: Final = "float16"


MAX_HADAMARD_SIZE: Final = 1 << 15


class HadamardTransform(BaseModel):
    """The seeded random-sign block Hadamard transform of a tensor's input dimension (codec/incoherence.py).

    Part of the canonical reconstruction where present: the float32 products
    go through it before the one rounding. ``size`` (a power of two) is the
    run of elements along the block axis that one Hadamard matrix mixes; it
    divides the axis length. ``seed`` chooses the signs.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["hadamard-sign-v1"] = "hadamard-sign-v1"
    size: int = Field(ge=2, le=MAX_HADAMARD_SIZE)
    seed: int = Field(ge=0, lt=1 << 63)

    @field_validator("size")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        if v & (v - 1):
            raise ValueError("hadamard size must be a power of two")
        return v


class CodecParams(BaseModel):
    """How one tensor was coded: enough to reconstruct it with no other knowledge."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scheme: Literal["codebook-blockscale-v1"] = "codebook-blockscale-v1"
    bits: int = Field(ge=2, le=8, description="bits per code; the codebook has 2**bits entries")
    block_size: int = Field(ge=1, le=1 << 20, description="weights per scale along the block axis")
    block_axis: int = Field(ge=0, description="axis of the tensor along which blocks run (its input dimension)")
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    scale_dtype: Literal["float16"] = SCALE_DTYPE
    transform: HadamardTransform | None = Field(
        default=None, description="incoherence transform applied before the rounding (format 1.1); absent: none")

    @model_serializer(mode="wrap")
    def _omit_absent_transform(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        """No ``transform`` key when there is none, so packs without one keep their format-1.0 bytes."""
        data = handler(self)
        if data.get("transform") is None:
            data.pop("transform", None)
        return data
