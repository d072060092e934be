"""Options of ``uc compress``, recorded in the manifest."""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ..errors import UsageError

# per-tensor glob rules: field -> (what its values are, lowest, highest), as the scalar fields bits and block_size allow
_RULE_RANGES = {"bits_for": ("bits", 2, 8), "block_size_for": ("block size", 8, 4096)}


class CompressOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bits: int = Field(5, ge=2, le=8)
    # per-tensor widths: checkpoint-key glob -> bits; globs of different widths must not share a tensor (see bits_for_key)
    bits_for: dict[str, int] = {}
    block_size: int = Field(64, ge=8, le=4096)
    # per-tensor block sizes: checkpoint-key glob -> weights per scale, under the same rule as bits_for
    block_size_for: dict[str, int] = {}
    # cap on the pack's effective bits per weight: each block tensor's (width, block size) is then chosen by measured
    # sensitivity on calibration text (compress/sensitivity.py, allocate.py) and recorded in bits_for/block_size_for
    target_bpw: float | None = Field(None, ge=2.0, le=16.0)
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    method: Literal["calibrated", "datafree"] = "calibrated"
    samples: int = Field(128, ge=1)
    seq_len: int = Field(512, ge=8)
    calibration_file: Path | None = None
    act_order: bool = True
    # GPTQ damping, in units of the Hessian's mean diagonal: 2.5 % (was 1 %) keeps the error feedback from leaning on
    # directions the calibration text barely excites (the out-of-domain gap, issue 28)
    damp: float = Field(default=0.025, gt=0, lt=1)
    # least-squares refit of codebook and block scales under the full Hessian, with new sweeps (gptq._refine_grid):
    # never worse on the coder's objective; off by default because it costs coding time (see docs/COMPRESSION.md)
    refit_grid: bool = False
    # incoherence processing (codec/incoherence.py): "auto" also codes each calibrated map in the random-sign Hadamard
    # domain and keeps, per map, whichever canonical reconstruction has the lower Hessian error (gptq.py); "off": never
    incoherence: Literal["auto", "off"] = "auto"
    # per-tensor domain: checkpoint-key glob -> "on" (code only in the incoherence domain) or "off" (only plain). Filled
    # by --target-bpw from the sensitivity pass, which codes every map's row sample in both domains anyway: the coder
    # then sweeps each map once instead of twice (issue 28, item 6). Keys matched by no glob follow ``incoherence``.
    incoherence_for: dict[str, Literal["on", "off"]] = {}
    # epochs of tuning each coded block's codebooks, scales and biases against the full-precision model's outputs,
    # codes fixed (compress/tune.py); 0 = off. Kept per block only if it lowers that block's output error.
    tune_epochs: int = Field(0, ge=0, le=100)
    # "auto": bfloat16 where the CPU multiplies bf16 natively, else float32 (see calibrated.resolve_calibration_dtype)
    calibration_dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    resume: bool = False
    # where blocks, activations, Hessians, the GPTQ sweep and the tuning run (resolved: "cpu" or "cuda:N"; the CLI's
    # --device auto picks). Codes may differ by device; the canonical reconstruction of whatever codes result does not.
    device: str = Field("cpu", pattern=r"^(cpu|cuda:\d+)$")
    shard_bytes: int = 256 * 1024 * 1024
    source_note: str = ""
    seed: int = 0
    # intra-op threads of the compression (None: torch's default, resolved and recorded before any work): float
    # reductions are split by thread, so the same bytes need the same count (RebuildRecipe.threads)
    threads: int | None = Field(None, ge=1, le=4096)

    @field_validator("bits_for", "block_size_for")
    @classmethod
    def _rule_values_in_range(cls, value: dict[str, int], info: ValidationInfo) -> dict[str, int]:
        what, low, high = _RULE_RANGES[info.field_name or ""]
        for pattern, v in value.items():
            if not low <= v <= high:
                raise ValueError(f"{pattern}: {what} must be in {low}..{high}, got {v}")
        return value

    @model_validator(mode="after")
    def _tuning_needs_calibration(self) -> "CompressOptions":
        if self.method == "datafree" and self.tune_epochs:
            raise ValueError("tune_epochs needs the calibrated method (block tuning runs on calibration data)")
        if self.method == "datafree" and self.target_bpw is not None:
            raise ValueError("target_bpw needs the calibrated method (sensitivity is measured on calibration data)")
        return self

    def bits_for_key(self, key: str) -> int:
        """Code width of one checkpoint tensor: that of the ``bits_for`` globs that match it, else ``bits``.

        Why per tensor: the output error a weight's rounding causes is far from
        uniform across a model (measured on SmolLM2: restoring the attention
        key projections, 3 % of the weights, recovers a fifth of the perplexity
        loss; restoring gate_proj, 25 % of them, recovers 2 %), so a fixed
        budget of bits is better spent unevenly, as llama.cpp's K-quant mixes do.
        """
        return _by_glob(self.bits_for, key, self.bits, "--bits-for", "widths")

    def block_size_for_key(self, key: str) -> int:
        """Weights per scale of one checkpoint tensor: that of the ``block_size_for`` globs that match it, else ``block_size``.

        Why per tensor: every block pays for a 16-bit scale (0.25 bits per
        weight at 64), and a tensor whose weights are evenly spread loses
        little from a larger block, so the bits saved there buy a wider code
        for a sensitive tensor (the encoder bench's knapsack chooses width and
        block size together; bench/encoder_mix.py).
        """
        return _by_glob(self.block_size_for, key, self.block_size, "--block-size-for", "block sizes")

    def incoherence_for_key(self, key: str) -> str:
        """The coder's incoherence mode for one checkpoint tensor: "on" or "off" where ``incoherence_for`` decides, else ``incoherence``."""
        if self.incoherence == "off":
            return "off"  # --incoherence off is never overridden: no tensor is rotated
        values = {value for pattern, value in self.incoherence_for.items() if fnmatch.fnmatchcase(key, pattern)}
        if len(values) > 1:
            raise UsageError(f"{key}: matched by incoherence_for globs that disagree ({sorted(values)})")
        return values.pop() if values else self.incoherence


def _by_glob(rule: dict[str, int], key: str, default: int, flag: str, what: str) -> int:
    """The value of the globs of ``rule`` that match ``key``, else ``default``; globs disagreeing on a key are refused."""
    values = {value for pattern, value in rule.items() if fnmatch.fnmatchcase(key, pattern)}
    if len(values) > 1:
        # the manifest records the rule with its keys sorted: an order-dependent rule would be ambiguous there
        raise UsageError(f"{key}: matched by {flag} globs of different {what} ({sorted(values)})")
    return values.pop() if values else default
