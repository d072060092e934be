"""From ``--target-bpw X`` to per-tensor rules: measure, allocate, and write the choice down as --bits-for/--block-size-for would.

The chosen (width, block size) of every tensor inside the decoder blocks
becomes an exact-key entry of ``bits_for`` and ``block_size_for``, so the
manifest records the allocation per tensor in the same fields a hand-written
mix uses, and the coder, the resume fingerprint and ``uc inspect`` need nothing
new. Tensors outside the blocks keep ``--bits``/``--block-size``; their bits
count against the cap too.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..architecture import TensorRole
from ..errors import UsageError
from .allocate import allocate, exact_glob
from .coding import codec_params
from .option_error import reference_option
from .options import CompressOptions
from .sensitivity import (
    OPTION_BITS,
    OPTION_BLOCKS,
    measure_sensitivity,
    option_cost_bits,
)
from ..source_model import SafetensorsSource


def allocate_for_target(
    model_dir: Path, source: SafetensorsSource, config: Any, roles: dict[str, TensorRole], options: CompressOptions,
    out: Path, progress: bool = True, stream: Any = None,
) -> tuple[CompressOptions, dict[str, str | int | float | bool]]:  # fmt: skip
    """The options with the allocation filled in, and what to record about it in the pack's compression info."""
    target = options.target_bpw
    assert target is not None
    if options.bits_for or options.block_size_for:
        raise UsageError("give --target-bpw or --bits-for/--block-size-for, not both (the target chooses every block tensor's width)")
    quantized = {k: r for k, r in roles.items() if r.quantize}
    if not quantized:
        raise UsageError("--target-bpw: the model has no tensor to quantize")
    numel = {k: math.prod(source.shape(k)) for k in quantized}
    budget = target * sum(numel.values())
    _refuse_unreachable(target, {k: (tuple(source.shape(k)), r.block_axis) for k, r in quantized.items() if r.block_axis is not None},
                        sum(numel.values()))  # fmt: skip
    measured = measure_sensitivity(model_dir, source, config, roles, options, out.resolve().parent, progress, stream)
    fixed = sum(option_cost_bits(tuple(source.shape(k)), codec_params(k, r, options)) for k, r in quantized.items()
                if k not in measured.damage)  # fmt: skip
    lowest = fixed + sum(min(c.values()) for c in measured.cost_bits.values())
    if lowest > budget:
        raise UsageError(f"--target-bpw {target}: the narrowest mix ({min(OPTION_BITS)} bits, block {max(OPTION_BLOCKS)}) "
                         f"already takes {lowest / sum(numel.values()):.3f} bits per weight")  # fmt: skip
    chosen = allocate(measured.damage, measured.cost_bits, budget - fixed)
    spent = fixed + sum(measured.cost_bits[k][o] for k, o in chosen.items())
    allocated = options.model_copy(update={
        "bits_for": {exact_glob(k): bits for k, (bits, _) in sorted(chosen.items())},
        "block_size_for": {exact_glob(k): size for k, (_, size) in sorted(chosen.items())},
        # the domain the sensitivity pass chose per map: the coder sweeps each map once, in that domain
        "incoherence_for": {exact_glob(k): "on" if rotated else "off" for k, rotated in sorted(measured.rotated.items())},
    })  # fmt: skip
    info: dict[str, str | int | float | bool] = {
        "target_bpw": target,
        "allocation": "per-tensor (bits, block size) by least estimated KL damage under the cap (compress/allocate.py)",
        "allocation_options": f"bits {min(OPTION_BITS)}-{max(OPTION_BITS)} x block {'/'.join(map(str, OPTION_BLOCKS))}",
        "allocated_tensors": len(chosen),
        "allocated_bpw_estimate": round(spent / sum(numel.values()), 6),
        # what the measurement took in seconds varies from run to run: not in the manifest, whose bytes must repeat
        **{k: v for k, v in measured.info.items() if not k.endswith("_seconds")},
    }
    if measured.rotated:
        bits, block = reference_option(OPTION_BITS, OPTION_BLOCKS)
        info["incoherence_choice"] = (f"per map by the sensitivity pass (its row sample at {bits} bits, block {block}): "
                                      f"{sum(measured.rotated.values())} of {len(measured.rotated)} maps rotated")  # fmt: skip
    return allocated, info


def _refuse_unreachable(target: float, shapes: dict[str, tuple[tuple[int, ...], int]], weights: int) -> None:
    """Fail before measuring anything when even the narrowest option of every tensor exceeds the cap (a lower bound)."""
    from ..codec.params import CodecParams

    def narrowest(shape: tuple[int, ...], axis: int) -> int:
        return min(option_cost_bits(shape, CodecParams(bits=b, block_size=z, block_axis=axis)) for b in OPTION_BITS for z in OPTION_BLOCKS)

    lowest = sum(narrowest(shape, axis) for shape, axis in shapes.values())
    if lowest > target * weights:
        raise UsageError(f"--target-bpw {target}: the narrowest mix ({min(OPTION_BITS)} bits, block {max(OPTION_BLOCKS)}) "
                         f"already takes {lowest / weights:.3f} bits per weight")  # fmt: skip
