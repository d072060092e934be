"""How much each quantized tensor's coding error costs, per coding option, for ``uc compress --target-bpw``.

damage(tensor, option) = coefficient(tensor) x error(tensor, option), where

* ``error`` is the Hessian-weighted error tr(D H D^T) of the *real* coder
  (gptq.py: the clip search, the importance candidates, the GPTQ sweep, as
  ``uc compress`` runs them; the incoherence transform where the tensor's
  reference coding chose it) in that option, on an
  evenly strided sample of the tensor's rows (rows are independent for a
  fixed H, so the sum over a sample, scaled, estimates the whole), under the
  input Hessian H the tensor sees in the original model; and
* ``coefficient`` is what a unit of that error costs at the model's output:
  the tensor alone is given a realistic coding error (the real coder at
  REFERENCE_OPTION, the whole tensor), the rest of the model stays original,
  and the mean per-token KL divergence of the output distribution from the
  original one rises by dKL; coefficient = dKL / error(REFERENCE_OPTION).

Why this and not the diagonal empirical Fisher of the loss it replaces: that
estimate priced options with a cheap rounding coder whose error ratios differ
from GPTQ's by 0.7x-4x per tensor family, and its gradients, squared from 4
windows, ranked single-tensor damage at 0.26-0.39 against measurement; at this
scale a single tensor's effect on the loss is first-order noise, while the KL
to the original distribution is second-order and always positive.

The KL probe keeps the whole model resident (the measurement runs the blocks
after the tensor's own, once per tensor) in float32, on KL_WINDOWS windows of
the calibration mix held out from the coder's windows where the text allows.
Tensors the probe cannot give a Hessian (no 2-D input through a module hook,
e.g. fused experts) are priced with H = identity, i.e. their plain squared
error, by the same coder.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..architecture import ROLE_HEAD, CheckpointKeyMapper, TensorRole
from ..codec.bitpack import packed_nbytes
from ..codec.params import CodecParams
from ..codec.reconstruct import reconstruct_from_codes
from ..evaluate.blocks import (
    build_calibration_skeleton,
    capture_inputs,
    find_blocks,
    first_output,
    load_checkpoint_tensors,
    materialise,
)
from ..evaluate.source import SafetensorsSource
from ..progress import bar_disabled
from .gptq import gptq_quantize, hessian_error, prepared_hessian, single_threaded
from .options import CompressOptions

OPTION_BITS = (3, 4, 5, 6, 7, 8)
OPTION_BLOCKS = (32, 64, 128)
REFERENCE_OPTION = (4, 64)  # the realistic coding error each tensor carries alone to measure its KL coefficient
KL_WINDOWS = 16  # windows of the calibration mix on which the KL increases are measured
KL_SEQ_LEN = 128  # tokens per KL window (at most --seq-len)
ESTIMATE_ELEMENTS = 1 << 15  # weights per tensor on which each option's coding error is estimated (a row sample)
MIN_COEFFICIENT_KL = 1e-12  # a KL increase below this (float32 noise) counts as this, so no tensor is free
Option = tuple[int, int]  # (bits, block size)


@dataclass
class Sensitivity:
    """Damage and on-disk bits of every block tensor in every option, and how they were measured."""

    damage: dict[str, dict[Option, float]] = field(default_factory=dict)
    cost_bits: dict[str, dict[Option, int]] = field(default_factory=dict)
    info: dict[str, str | int | float | bool] = field(default_factory=dict)


def option_cost_bits(shape: tuple[int, ...], params: CodecParams) -> int:
    """Bits the pack stores for a tensor of ``shape`` coded with ``params``: codes, float16 scales, float32 codebook."""
    numel = math.prod(shape)
    axis = shape[params.block_axis]
    scales = numel // axis * -(-axis // params.block_size)
    return 8 * (packed_nbytes(numel, params.bits) + 2 * scales + 4 * (1 << params.bits))


def sampled_rows(tensor: torch.Tensor, block_axis: int, max_elements: int = ESTIMATE_ELEMENTS) -> tuple[torch.Tensor, float]:
    """An evenly strided subset of the tensor's rows (blocks run along the last axis), and the factor back to all rows.

    Damage is a sum over weights, so summing over a row sample and scaling by
    rows / sampled rows estimates it without bias at a fraction of the cost.
    """
    rows = tensor.movedim(block_axis, -1).reshape(-1, tensor.shape[block_axis])
    step = max(1, rows.numel() // max_elements)
    sample = rows[::step]
    return sample, rows.shape[0] / sample.shape[0]


def held_out_windows(ids: torch.Tensor, seq_len: int, coded: int, count: int) -> tuple[torch.Tensor, bool]:
    """``count`` windows of the token stream not among the ``coded`` evenly spaced calibration windows.

    Returns the windows and whether they are disjoint from the coder's (False
    only when the text is too short for both: then the coder's own windows).
    """
    available = ids.numel() // seq_len
    used = {j * available // coded for j in range(coded)} if coded else set()
    free = [w for w in range(available) if w not in used]
    held_out = bool(free)
    pool = free if free else sorted(used)
    n = min(count, len(pool))
    picks = [pool[j * len(pool) // n] for j in range(n)]
    return torch.stack([ids[w * seq_len : (w + 1) * seq_len] for w in picks]), held_out


def _expert_index(key: str) -> int | None:
    found = re.findall(r"experts\.(\d+)\.", key)
    return int(found[-1]) if found else None




def as_rows(tensor: torch.Tensor, block_axis: int) -> torch.Tensor:
    """The tensor as a 2-D [rows, input] matrix with its block axis last (how the coder sees it)."""
    return tensor.movedim(block_axis, -1).reshape(-1, tensor.shape[block_axis])


def from_rows(rows: torch.Tensor, shape: tuple[int, ...], block_axis: int) -> torch.Tensor:
    moved = list(shape)
    moved.append(moved.pop(block_axis))
    return rows.reshape(moved).movedim(-1, block_axis)


def coded_rows(rows: torch.Tensor, option: Option, hessian: torch.Tensor | None, options: CompressOptions,
               incoherence: str | None = None) -> tuple[torch.Tensor, bool]:  # fmt: skip
    """The canonical reconstruction (float32) of ``rows`` coded by the real coder in ``option`` (blocks along axis 1),
    and whether it kept the incoherence transform. ``incoherence`` overrides the options' choice ("on"/"off")."""
    params = CodecParams(bits=option[0], block_size=option[1], block_axis=1, dtype=options.dtype)
    enc, codes = gptq_quantize(rows, params, hessian, damp=options.damp, act_order=options.act_order, seed=options.seed,
                               incoherence=incoherence or options.incoherence)  # fmt: skip
    rebuilt = reconstruct_from_codes(codes, enc.codebook, enc.scales, enc.params).to(torch.float32)
    return rebuilt, enc.params.transform is not None


def option_error(rows: torch.Tensor, option: Option, hessian: torch.Tensor | None, options: CompressOptions,
                 incoherence: str | None = None) -> float:  # fmt: skip
    """tr(D H D^T) of the real coder's canonical reconstruction of ``rows`` in ``option`` (H = identity if None)."""
    h = prepared_hessian(hessian if hessian is not None else torch.eye(rows.shape[1]), options.damp)
    return hessian_error(rows.to(torch.float32), coded_rows(rows, option, hessian, options, incoherence)[0], h)


class KLProbe:
    """The original model, resident, and the KL increase of its output when one checkpoint tensor is replaced.

    Built once: every block's inputs on the probe windows, the input Hessian
    of every block tensor read through an ``nn.Linear``-like module, and the
    original output log-probabilities. ``kl_increase(key, tensor)`` then loads
    ``tensor`` in place of ``key``, reruns only the blocks from the tensor's
    own, and restores the original.
    """

    def __init__(self, source: SafetensorsSource, config: Any, roles: dict[str, TensorRole], windows: torch.Tensor) -> None:
        from .calibrated import materialise_outside, split_block_keys

        self.source, self.roles, self.windows, self.dtype = source, roles, windows, torch.float32
        self.model = build_calibration_skeleton(config)
        self.mapper = CheckpointKeyMapper(self.model)
        self.prefix, self.blocks = find_blocks(self.model)
        self.block_keys, outside = split_block_keys(source, self.mapper, self.prefix, len(self.blocks))
        materialise_outside(self.model, self.blocks, source, outside, roles, self.dtype)
        head_keys = [k for k in outside if roles[k].role == ROLE_HEAD]
        head: Any = self.model.get_output_embeddings()
        if head is not None:  # materialise_outside leaves the head empty: its checkpoint tensor, or the tied embeddings
            embeddings: Any = self.model.get_input_embeddings()
            weight = source.load(head_keys[0]).to(self.dtype) if head_keys else embeddings.weight.detach()
            head._parameters["weight"] = nn.Parameter(weight, requires_grad=False)
        for i, block in enumerate(self.blocks):
            materialise(block, self.dtype)
            load_checkpoint_tensors(self.model, {k: source.load(k) for k in self.block_keys[i]}, self.dtype)
        self.block_of = {k: i for i, keys in self.block_keys.items() for k in keys}
        rows = list(windows.split(1))
        captured = capture_inputs(self.model, self.blocks, rows)
        assert captured.hidden is not None
        self.calls = [captured.kwargs[i][1] for i in range(len(self.blocks))]
        self.inputs: list[torch.Tensor] = []
        self.hessians: dict[str, torch.Tensor] = {}
        self.tokens = 0
        hidden = captured.hidden.to(self.dtype)
        with torch.no_grad():
            for i in range(len(self.blocks)):
                self.inputs.append(hidden)
                with self._hessian_hooks(i):
                    hidden = self._run_block(i, hidden)
            self.reference = self._log_probs(hidden)

    def _run_block(self, i: int, hidden: torch.Tensor) -> torch.Tensor:
        args, kw = self.calls[i]
        return torch.cat([first_output(self.blocks[i](h.unsqueeze(0), *args, **kw)) for h in hidden])

    @contextmanager
    def _hessian_hooks(self, i: int) -> Iterator[None]:
        """Accumulate X^T X (float64) of the input of every module whose weight is one of block ``i``'s quantized tensors."""
        handles = []
        for key in self.block_keys[i]:
            role = self.roles[key]
            if not role.quantize or role.block_axis is None or len(self.source.shape(key)) != 2:
                continue
            owner_path, _, attr = self.mapper.target(key).rpartition(".")
            module = self.model.get_submodule(owner_path)
            width = self.source.shape(key)[role.block_axis]
            if attr != "weight" or tuple(getattr(module, attr).shape) not in (tuple(self.source.shape(key)), tuple(self.source.shape(key))[::-1]):
                continue

            def hook(_m: nn.Module, inputs: tuple[Any, ...], _out: Any, key: str = key, width: int = width) -> None:
                x = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
                if x is None or x.shape[-1] != width:
                    return
                x = x.detach().reshape(-1, width).to(torch.float64)
                self.hessians[key] = self.hessians.get(key, torch.zeros(width, width, dtype=torch.float64)) + x.t() @ x

            handles.append(module.register_forward_hook(hook))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _log_probs(self, last: torch.Tensor) -> torch.Tensor:
        """Log-probabilities over the vocabulary of every window position, from the last block's outputs."""
        from ..evaluate.streaming import _replaying_outputs

        final: dict[str, Any] = {"tuple": False}
        out = []
        with _replaying_outputs(self.blocks, final):
            for row, hidden in zip(self.windows.split(1), last, strict=True):
                final["hidden"] = hidden.unsqueeze(0)
                logits = self.model(input_ids=row, use_cache=False).logits
                out.append(torch.log_softmax(logits[0].to(torch.float32), dim=-1))
        return torch.stack(out)

    def hessian(self, key: str) -> torch.Tensor | None:
        """The mean input second moment of ``key``'s module (None where no 2-D input was seen)."""
        h = self.hessians.get(key)
        return None if h is None else h / max(1, self.windows.numel())

    def kl_increase(self, key: str, tensor: torch.Tensor) -> float:
        """Mean per-token KL(original || model with ``tensor`` as ``key``), the rest of the model original."""
        i = self.block_of[key]
        originals = {k: self.source.load(k) for k in self.block_keys[i]}
        with torch.no_grad():
            try:
                load_checkpoint_tensors(self.model, {**originals, key: tensor}, self.dtype)
                hidden = self.inputs[i]
                for j in range(i, len(self.blocks)):
                    hidden = self._run_block(j, hidden)
            finally:
                load_checkpoint_tensors(self.model, originals, self.dtype)
            coded = self._log_probs(hidden)
        return float((self.reference.exp() * (self.reference - coded)).sum(-1).mean())


@dataclass
class TensorEstimate:
    """One tensor's measured pieces: the KL coefficient and the coder's error per option."""

    coefficient: float
    kl_reference: float
    error_reference: float
    errors: dict[Option, float]


def estimate_tensor(probe: KLProbe, key: str, options: CompressOptions, option_list: list[Option]) -> TensorEstimate:
    """Coefficient (dKL per unit Hessian error at REFERENCE_OPTION, whole tensor) and the real coder's error per option."""
    role = probe.roles[key]
    assert role.block_axis is not None
    weight = probe.source.load(key)
    shape = tuple(weight.shape)
    rows = as_rows(weight, role.block_axis).to(torch.float32)
    hessian = probe.hessian(key)
    with single_threaded():
        coded, rotated = coded_rows(rows, REFERENCE_OPTION, hessian, options)
        h = prepared_hessian(hessian if hessian is not None else torch.eye(rows.shape[1]), options.damp)
        error_reference = hessian_error(rows, coded, h)
    kl = probe.kl_increase(key, from_rows(coded, shape, role.block_axis).to(weight.dtype))
    sample, factor = sampled_rows(rows, 1)
    with single_threaded():
        # the incoherence choice of the reference coding holds for the other options: one sweep per option, not two
        errors = {o: factor * option_error(sample, o, hessian, options, "on" if rotated else "off") for o in option_list}
    coefficient = max(kl, MIN_COEFFICIENT_KL) / max(error_reference, 1e-30)
    return TensorEstimate(coefficient, kl, error_reference, errors)


def probe_windows(model_dir: Path, config: Any, options: CompressOptions, count: int = KL_WINDOWS,
                  skip: int = 0, stream: tuple[torch.Tensor, Any] | None = None) -> tuple[torch.Tensor, bool]:  # fmt: skip
    """``count`` windows of KL_SEQ_LEN tokens of the calibration mix, held out from the coder's windows where possible.

    ``skip`` windows of the held-out pool are passed over first (the validation
    bench measures on windows the coefficients were not taken on). ``stream``: the
    compression's own tokenised calibration text, when given (tokenised once per run).
    """
    if stream is None:
        from .calibrated import calibration_stream

        stream = calibration_stream(model_dir, options, int(getattr(config, "vocab_size", 0) or 1 << 16))
    ids = stream[0]
    seq = min(options.seq_len, KL_SEQ_LEN)
    coded = min(options.samples, ids.numel() // options.seq_len)
    # the coder's windows, in units of the probe's shorter windows
    ratio = max(1, options.seq_len // seq)
    windows, held_out = held_out_windows(ids, seq, coded * ratio, count + skip)
    return windows[skip:] if windows.shape[0] > skip else windows, held_out


def measure_sensitivity(
    model_dir: Path, source: SafetensorsSource, config: Any, roles: dict[str, TensorRole], options: CompressOptions,
    work_parent: Path, progress: bool = True, stream: tuple[torch.Tensor, dict[str, Any]] | None = None,
) -> Sensitivity:  # fmt: skip
    """KL coefficient x real-coder error of every quantized tensor inside the decoder blocks, in every option."""
    from tqdm import tqdm

    start = time.perf_counter()
    windows, held_out = probe_windows(model_dir, config, options, stream=stream)
    probe = KLProbe(source, config, roles, windows)
    keys = [k for i in sorted(probe.block_keys) for k in probe.block_keys[i] if roles[k].quantize and roles[k].block_axis is not None]
    option_list = [(b, z) for b in OPTION_BITS for z in OPTION_BLOCKS]
    result = Sensitivity()
    for key in tqdm(keys, desc="sensitivity", unit="tensor", disable=bar_disabled(progress)):
        estimate = estimate_tensor(probe, key, options, option_list)
        shape = tuple(source.shape(key))
        axis = roles[key].block_axis
        assert axis is not None
        result.damage[key] = {o: estimate.coefficient * e for o, e in estimate.errors.items()}
        result.cost_bits[key] = {o: option_cost_bits(shape, CodecParams(bits=o[0], block_size=o[1], block_axis=axis)) for o in option_list}
    result.info = {
        "sensitivity": f"KL increase per unit Hessian error (each tensor alone at {REFERENCE_OPTION[0]} bits / block "
                       f"{REFERENCE_OPTION[1]}) x the real coder's Hessian error per option",
        "sensitivity_windows": int(windows.shape[0]),
        "sensitivity_window_tokens": int(windows.shape[1]),
        "sensitivity_windows_held_out": held_out,
        "sensitivity_seconds": round(time.perf_counter() - start, 1),
    }  # fmt: skip
    return result
