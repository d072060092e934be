"""Calibrated streaming compression: one decoder block resident at a time.

1. Calibration ids: ``--samples`` windows of ``--seq-len`` tokens, evenly spaced
   over the calibration text (built-in: docstrings disjoint from the evaluation
   text mixed with system documentation prose, never overlapping either
   evaluation text, evaluate/mixed_text.py; or ``--calibration FILE``)
   tokenised with the model's tokenizer.
2. The model is a skeleton (meta parameters, real buffers). Only the modules
   before the blocks (embeddings) are materialised to capture the first block's
   inputs and every block's keyword arguments; they are freed again.
3. For each block: load its tensors from the shards, collect input statistics
   group by group (q/k/v, o, gate/up, down, experts, ...), quantize each group
   with Hessian error feedback onto a learned codebook times block scales, put
   the canonical reconstruction of the final packed codes into the block, run
   the block to produce the next block's inputs, persist the block in the work
   directory, free it. With ``--tune-epochs`` a second stream of activations,
   the full-precision model's, runs alongside: before the block is coded, its
   original weights turn that stream's inputs into the targets, and after
   coding the block's codebooks, scales and biases are tuned so that, fed the
   coded stream's inputs, it reproduces them (``tune.py``; codes fixed).
4. Finally every checkpoint tensor is handed to the pack writer in key order,
   from the work directory, so an interrupted and resumed run writes the same
   bytes as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ..architecture import ROLE_EXPERTS, ROLE_HEAD, CheckpointKeyMapper, TensorRole
from ..codec.encoded import EncodedTensor
from ..codec.reconstruct import reconstruct, tensor_digest
from ..errors import UsageError
from ..evaluate.mixed_text import CALIBRATION_SOURCE_NAME, calibration_mix_text
from ..evaluate.text import read_text_file
from ..evaluate.blocks import (
    block_of,
    buffers_to_device,
    build_calibration_skeleton,
    capture_inputs,
    find_blocks,
    first_output,
    load_checkpoint_tensors,
    materialise,
    release,
    return_freed_memory,
)
from ..source_model import SafetensorsSource
from ..pack.writer import PackWriter
from ..progress import bar_disabled
from .blockscale import encode_datafree
from .coding import add_datafree, codec_params, passthrough_tensor
from .gptq import gptq_quantize_group, prepare_hessian, prepare_rotated
from .hessian import (
    StopBlock,
    UnitStats,
    attach,
    discover_groups,
    is_dense_unit,
    is_expert_unit,
    shrink,
)
from .options import CompressOptions
from .replay_cache import ReplayCache, TailInputs
from .resume import WorkDir, source_fingerprint
from .tune import CodedMap, tune_block, unpacked_codes

TOKENS_PER_BATCH = 2048
ALGORITHM = "gptq-codebook-v1"


# -- calibration data ---------------------------------------------------------------------------


CalibrationStream = tuple[torch.Tensor, dict[str, Any]]
"""The calibration text as one int64 token stream, and where it came from: tokenised once per compression and shared
by the sensitivity measurement (--target-bpw) and the coder (compress_model builds it)."""


def calibration_stream(model_dir: Path, options: CompressOptions, vocab_size: int) -> CalibrationStream:
    """The whole calibration text as one int64 token stream, and where it came from."""
    if options.calibration_file is not None:
        text = read_text_file(options.calibration_file)
        source = Path(options.calibration_file).name
    else:
        text = calibration_mix_text()
        source = CALIBRATION_SOURCE_NAME
    has_tokenizer = any((model_dir / n).is_file() for n in ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt"))
    if has_tokenizer:
        from ..evaluate.tokens import tokenize_text

        ids = tokenize_text(model_dir, text)
        tokenizer = "model"
    else:  # a model without a tokenizer (tests): UTF-8 bytes folded into the vocabulary
        ids = torch.tensor(list(text.encode("utf-8")), dtype=torch.int64) % vocab_size
        tokenizer = "utf8-bytes-mod-vocab"
    info = {
        "calibration_source": source,
        "calibration_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "calibration_tokenizer": tokenizer,
    }
    return ids.reshape(-1), info


def calibration_ids(model_dir: Path, options: CompressOptions, vocab_size: int,
                    stream: CalibrationStream | None = None) -> tuple[torch.Tensor, dict[str, Any]]:  # fmt: skip
    """[samples, seq_len] int64 windows evenly spaced over the calibration text (``stream``: already tokenised)."""
    ids, info = stream if stream is not None else calibration_stream(model_dir, options, vocab_size)
    info = dict(info)
    available = ids.numel() // options.seq_len
    if available < 1:
        raise UsageError(f"the calibration text has {ids.numel()} tokens, fewer than one window of {options.seq_len}")
    n = min(options.samples, available)
    starts = [(j * available // n) * options.seq_len for j in range(n)]
    windows = torch.stack([ids[s : s + options.seq_len] for s in starts])
    info |= {"samples": n, "seq_len": options.seq_len, "calibration_tokens": n * options.seq_len}
    return windows, info


def split_block_keys(source: SafetensorsSource, mapper: CheckpointKeyMapper, prefix: str, count: int) -> tuple[dict[int, list[str]], list[str]]:
    """Checkpoint keys by the decoder block they load into, and those outside every block."""
    block_keys: dict[int, list[str]] = {i: [] for i in range(count)}
    outside: list[str] = []
    for key in source.keys():
        b = block_of(mapper.target(key), prefix)
        (block_keys[b] if b is not None and b in block_keys else outside).append(key)
    return block_keys, outside


# -- the model around the blocks ----------------------------------------------------------------


def _outside_modules(model: nn.Module, blocks: nn.ModuleList) -> list[nn.Module]:
    inside = {id(m) for m in blocks.modules()}
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return [m for m in model.modules() if id(m) not in inside and m is not head]


def materialise_outside(model: nn.Module, blocks: nn.ModuleList, source: SafetensorsSource, keys: list[str],
                         roles: dict[str, TensorRole], dtype: torch.dtype, device: torch.device | str = "cpu") -> list[nn.Module]:  # fmt: skip
    modules = _outside_modules(model, blocks)
    for m in modules:
        for name, p in list(m._parameters.items()):
            if p is not None and p.device.type == "meta":
                m._parameters[name] = nn.Parameter(torch.empty(p.shape, dtype=dtype, device=device), requires_grad=False)
    state = {k: source.load(k).to(device) for k in keys if roles[k].role != ROLE_HEAD}
    if state:
        load_checkpoint_tensors(model, state, dtype)
    return modules


def release_outside(modules: list[nn.Module]) -> None:
    for m in modules:
        for name, p in list(m._parameters.items()):
            if p is not None and p.device.type != "meta":
                m._parameters[name] = nn.Parameter(p.detach().to("meta"), requires_grad=False)


# -- one block ------------------------------------------------------------------------------------


def _expert_index(key: str) -> int | None:
    found = re.findall(r"experts\.(\d+)\.", key)
    return int(found[-1]) if found else None


TAIL_BUDGET_FACTOR = 4  # a child's last map's kept inputs: at most this many times the block's input activations


def _last_maps_of_children(groups: list[list[str]], units: dict[str, nn.Module]) -> dict[int, str]:
    """Groups that are one dense map run last within a direct child of the block: group index -> that child.

    Candidates only: whether the child's output is that map's output is checked
    on the first batch (replay_cache.ReplayCache._from_tail). A map directly on
    the block (no child) never qualifies.
    """
    last: dict[str, int] = {}
    for index, group in enumerate(groups):
        for unit in group:
            if "." in unit:
                last[unit.split(".", 1)[0]] = index
    return {
        index: child
        for child, index in last.items()
        if len(groups[index]) == 1 and is_dense_unit(units[groups[index][0]]) and groups[index][0].startswith(child + ".")
    }


class BlockCoder:
    def __init__(self, model: nn.Module, block: nn.Module, prefix: str, keys: list[str], mapper: CheckpointKeyMapper,
                 roles: dict[str, TensorRole], options: CompressOptions, dtype: torch.dtype,
                 replay_budget_bytes: int) -> None:  # fmt: skip
        self.model, self.block, self.options, self.dtype = model, block, options, dtype
        self.device = torch.device(options.device)
        self.roles = roles
        self.prefix = prefix
        # passthrough tensors of this block by their path inside it (a map's bias is tuned with the map)
        self.passthrough_paths = {self._path_in_block(mapper.target(k)): k for k in keys if not roles[k].quantize}
        self.quant_keys = [k for k in keys if roles[k].quantize]
        self.key_unit: dict[str, str] = {}
        self.key_param: dict[str, str] = {}
        self.units: dict[str, nn.Module] = {}
        self.child_keys: dict[str, set[str]] = {}  # direct child of the block -> quantized keys inside it
        self.loaded: set[str] = set()  # keys whose final reconstruction is in the block
        for key in self.quant_keys:
            target = mapper.target(key)
            module_name, _, attr = target.rpartition(".")
            rel = module_name[len(prefix) + 1 :].split(".", 1)[1] if "." in module_name[len(prefix) + 1 :] else ""
            if rel:
                self.child_keys.setdefault(rel.split(".", 1)[0], set()).add(key)
            module = block.get_submodule(rel) if rel else block
            if is_dense_unit(module) or (is_expert_unit(module) and roles[key].role == ROLE_EXPERTS):
                self.units[rel] = module
                self.key_unit[key] = rel
                self.key_param[key] = attr
        self.fallbacks: dict[str, str] = {}
        self._finished: dict[str, tuple[EncodedTensor, torch.Tensor]] = {}  # key -> codes and their reconstruction, until loaded
        # kept outputs of finished children: at most one more copy of the block's activations
        self.cache = ReplayCache(block, budget_bytes=replay_budget_bytes)

    def _path_in_block(self, target: str) -> str:
        return target[len(self.prefix) + 1 :].split(".", 1)[-1]

    def finished_children(self) -> list[str]:
        """Direct children of the block whose every quantized weight holds its final reconstruction."""
        return [name for name, keys in self.child_keys.items() if keys <= self.loaded]

    def run(self, hidden: torch.Tensor, kwargs: dict[int, tuple[tuple[Any, ...], dict[str, Any]]], batch: int,
            *, stop_early: bool, replay: bool = True) -> torch.Tensor | None:  # fmt: skip
        """The block over every calibration batch; finished children replay their outputs (see replay_cache)."""
        outs = []
        with self.cache.replaying(self.finished_children() if replay else []):
            for index, x in enumerate(hidden.split(batch)):
                self.cache.start_batch(index)
                try:
                    args, kw = kwargs[x.shape[0]]
                    outs.append(first_output(self.block(x.to(self.dtype), *args, **kw)))
                except StopBlock:
                    continue
        return None if stop_early else torch.cat(outs)

    @torch.no_grad()
    def code(self, hidden: torch.Tensor, kwargs: dict[int, tuple[tuple[Any, ...], dict[str, Any]]], batch: int,
             source: SafetensorsSource, bar: Any = None) -> dict[str, tuple[EncodedTensor, str, str]]:  # fmt: skip
        groups = discover_groups(self.block, self.units, lambda: self.run(hidden[:batch], kwargs, batch, stop_early=False, replay=False))
        results: dict[str, tuple[EncodedTensor, str, str]] = {}
        tails = _last_maps_of_children(groups, self.units)
        for index, group in enumerate(groups):
            if bar is not None:
                bar.set_postfix_str("+".join(g.rsplit(".", 1)[-1] for g in group))
            stats = {u: UnitStats() for u in group}
            shared = all(is_dense_unit(self.units[u]) for u in group)  # one input tensor: see discover_groups
            # a child's last map: its input, kept, gives the child's output on the next run (see replay_cache)
            tail = TailInputs(TAIL_BUDGET_FACTOR * self.cache.budget_bytes) if index in tails else None
            keep = (lambda x, t=tail: t.keep(self.cache.batch, x)) if tail is not None else None
            handles = attach({u: self.units[u] for u in group}, stats, stop_when_done=True, shared_input=shared, keep=keep)
            try:
                self.run(hidden, kwargs, batch, stop_early=True)
            finally:
                for h in handles:
                    h.remove()
            keys = [k for k in self.quant_keys if self.key_unit.get(k) in group]
            results.update(self._code_keys(keys, stats, source))
            self._load([k for k in keys], results)
            # only where the map finishes its child: a weight of the child coded later would change its output
            if tail is not None and self.child_keys.get(tails[index], set()) <= self.loaded:
                self.cache.set_tail(tails[index], self.units[group[0]], tail)
        # units no calibration token reached, and linear-role tensors outside any unit: data-free
        rest = [k for k in self.quant_keys if k not in results]
        for key in rest:
            results[key] = self._datafree(key, source)
            self.fallbacks[key] = "never called on calibration data: data-free coding"
        if rest:
            self._load(rest, results)
        return results

    def tune(self, hidden: torch.Tensor, target: torch.Tensor, kwargs: dict[int, tuple[tuple[Any, ...], dict[str, Any]]],
             batch: int, results: dict[str, tuple[EncodedTensor, str, str]],
             passthrough: dict[str, tuple[torch.Tensor, str]]) -> bool:  # fmt: skip
        """Tune the block's dense coded maps against ``target`` (see tune.py); True if the tuning was kept.

        Updates ``results`` and ``passthrough`` (biases) in place and loads the
        canonical reconstruction of the tuned state into the block. Maps whose
        module weight is not the checkpoint tensor itself (a converted or fused
        layout) and experts are left as coded.
        """
        maps: list[CodedMap] = []
        key_of: dict[str, str] = {}
        for key, (enc, _role, _digest) in results.items():
            unit = self.key_unit.get(key)
            if unit is None or not is_dense_unit(self.units[unit]) or len(enc.shape) != 2:
                continue
            path = f"{unit}.{self.key_param[key]}"
            weight = self.block.get_parameter(path)
            if tuple(weight.shape) != enc.shape:
                continue
            canonical = reconstruct(enc.packed_codes, enc.codebook, enc.scales, enc.shape, enc.params)
            if not torch.equal(weight, canonical.to(device=weight.device, dtype=weight.dtype)):
                continue
            key_of[path] = key
            bias_key = self.passthrough_paths.get(f"{unit}.bias")
            if bias_key is None or not isinstance(getattr(self.units[unit], "bias", None), nn.Parameter):
                maps.append(CodedMap(path, enc, unpacked_codes(enc)))
                continue
            key_of[f"{unit}.bias"] = bias_key
            maps.append(CodedMap(path, enc, unpacked_codes(enc), f"{unit}.bias", passthrough[bias_key][0].dtype))
        inputs, targets = hidden.split(batch), target.split(batch)

        def run(i: int) -> torch.Tensor:
            x = inputs[i]
            args, kw = kwargs[x.shape[0]]
            return first_output(self.block(x.to(self.dtype), *args, **kw))

        result = tune_block(self.block, maps, run, lambda i: targets[i], len(inputs), self.options.tune_epochs,
                            seed=self.options.seed)  # fmt: skip
        if not result.accepted:
            return False
        for path, enc in result.encoded.items():
            results[key_of[path]] = self._finish(key_of[path], enc)
        self._load([key_of[p] for p in result.encoded], results)
        for path, bias in result.biases.items():
            passthrough[key_of[path]] = (bias, passthrough[key_of[path]][1])
        if result.biases:
            load_checkpoint_tensors(self.model, {key_of[p]: b.to(self.device) for p, b in result.biases.items()}, self.dtype)
        return True

    def _params(self, key: str) -> Any:
        return codec_params(key, self.roles[key], self.options)

    def _finish(self, key: str, enc: EncodedTensor) -> tuple[EncodedTensor, str, str]:
        canonical = reconstruct(enc.packed_codes, enc.codebook, enc.scales, enc.shape, enc.params)
        self._finished[key] = (enc, canonical)  # loaded into the block next (_load): reconstructed once, not twice
        return enc, self.roles[key].role, tensor_digest(canonical)

    def _datafree(self, key: str, source: SafetensorsSource) -> tuple[EncodedTensor, str, str]:
        enc, _ = encode_datafree(source.load(key), self._params(key))
        return self._finish(key, enc)

    def _code_keys(self, keys: list[str], stats: dict[str, UnitStats], source: SafetensorsSource) -> dict[str, tuple[EncodedTensor, str, str]]:
        # bundle keys that share one statistic: (unit, which statistic, expert)
        bundles: dict[tuple[str, str, int | None], list[str]] = {}
        for key in keys:
            unit = self.key_unit[key]
            module = self.units[unit]
            if is_expert_unit(module):
                e = _expert_index(key)
                which = "h_mid" if self.key_param[key] == "down_proj" else "h_in"
                bundles.setdefault((unit, which, e), []).append(key)
            else:
                bundles.setdefault((unit, "h", None), []).append(key)
        # dense units of one group read the same input: one sweep for all of them
        merged: dict[tuple[Any, ...], list[str]] = {}
        for (unit, which, e), ks in bundles.items():
            tag: tuple[Any, ...] = ("dense",) if which == "h" else (unit, which, e)
            merged.setdefault(tag, []).extend(ks)
        out: dict[str, tuple[EncodedTensor, str, str]] = {}
        for tag, ks in merged.items():
            if tag == ("dense",):
                st = stats[self.key_unit[ks[0]]]
                h = shrink(st.h / max(st.tokens, 1), st.tokens) if st.h is not None else None
            else:
                unit, which, e = tag
                st = stats[unit]
                h = None
                if e is not None and e in st.expert_tokens:
                    h = shrink(getattr(st, which)[e] / st.expert_tokens[e], st.expert_tokens[e])
                elif which == "h_in" and st.h_all is not None:
                    h = st.h_all  # expert no token reached: statistics of every token entering the layer
                    h = shrink(h, max(st.expert_tokens.values(), default=0) or h.shape[0])
                    for k in ks:
                        self.fallbacks[k] = "expert reached by no calibration token: Hessian of all tokens of the layer"
                else:
                    for k in ks:
                        out[k] = self._datafree(k, source)
                        self.fallbacks[k] = "expert reached by no calibration token: data-free coding"
                    continue
            out.update(self._gptq(ks, h, source))
        return out

    def _gptq(self, keys: list[str], h: torch.Tensor | None, source: SafetensorsSource) -> dict[str, tuple[EncodedTensor, str, str]]:
        out: dict[str, tuple[EncodedTensor, str, str]] = {}
        two_d = [k for k in keys if len(source.shape(k)) == 2]
        for k in keys:
            if k not in two_d:
                out[k] = self._datafree(k, source)
                self.fallbacks[k] = "not a 2-D checkpoint tensor: data-free coding"
        # one sweep per incoherence choice, whatever the block sizes (gptq_quantize_group takes each map's own)
        params = {k: self._params(k) for k in two_d}
        by_mode: dict[str, list[str]] = {}
        for k in two_d:
            by_mode.setdefault(self.options.incoherence_for_key(k), []).append(k)
        # one damped, factorised Hessian per domain for every sweep of the group (the input width is the statistic's)
        prepared = rotated = None
        if two_d and h is not None:
            first = two_d[0]
            cols = source.shape(first)[params[first].block_axis]
            if set(by_mode) - {"on"}:  # a map coded in the plain domain ("off" or "auto")
                prepared = prepare_hessian(h, cols, self.options.damp, self.options.act_order, self.device)
            if set(by_mode) - {"off"}:  # a map coded in the incoherence domain ("on" or "auto")
                rotated = prepare_rotated(h, cols, self.options.damp, self.options.act_order, self.options.seed, self.device)
        for mode, ks in by_mode.items():
            coded = gptq_quantize_group(
                [source.load(k).to(self.device) for k in ks], [params[k] for k in ks], h,
                damp=self.options.damp, act_order=self.options.act_order, seed=self.options.seed,
                refit=self.options.refit_grid, incoherence=mode, prepared=prepared, prepared_rotated=rotated,
            )  # fmt: skip
            for k, (enc, _) in zip(ks, coded):
                out[k] = self._finish(k, enc)
        return out

    def _load(self, keys: list[str], results: dict[str, tuple[EncodedTensor, str, str]]) -> None:
        """Put the canonical reconstruction of the final packed codes into the block."""
        state = {}
        for k in keys:
            enc = results[k][0]
            finished_enc, canonical = self._finished.pop(k, (None, None))
            if finished_enc is not enc or canonical is None:  # not the codes _finish reconstructed: reconstruct these
                canonical = reconstruct(enc.packed_codes, enc.codebook, enc.scales, enc.shape, enc.params)
            # the canonical codec (CPU, bit-exact on every machine), then copied to the block's device unchanged
            state[k] = canonical.to(self.device)
        load_checkpoint_tensors(self.model, state, self.dtype)
        self.loaded.update(keys)


# -- driver ---------------------------------------------------------------------------------------


def _determinism(seed: int) -> None:
    # Every random choice (k-means subsampling) uses its own seeded generator; the CPU
    # kernels used here are deterministic for a given thread count, so a run repeats
    # bit for bit on the same machine. (torch.use_deterministic_algorithms is not set:
    # it changes no CPU result used here and makes in-place slice updates ~10x slower.)
    torch.manual_seed(seed)


def resolve_calibration_dtype(choice: str, device: str = "cpu") -> str:
    """The dtype block replays run in: "auto" is bfloat16 only where the CPU multiplies bf16 natively.

    Why: with AVX512-BF16 or AMX, bf16 matrix products are several times faster
    than float32; on a CPU with AVX2 only, torch emulates them and they are about
    7x slower than float32 (measured on a 2-core EPYC), which would put a
    SmolLM2 compression far past its time budget. The resolved dtype is recorded
    in the pack's compression info and in the resume fingerprint.
    """
    if choice != "auto":
        return choice
    if torch.device(device).type == "cuda":
        return "bfloat16"  # every CUDA device torch supports multiplies bf16 natively (tensor cores from Ampere on)
    native = [getattr(torch.cpu, probe, lambda: False) for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return "bfloat16" if any(check() for check in native) else "float32"


def compress_calibrated(
    model_dir: Path,
    source: SafetensorsSource,
    config: Any,
    roles: dict[str, TensorRole],
    writer: PackWriter,
    options: CompressOptions,
    out_path: Path,
    progress: bool = True,
    stream: CalibrationStream | None = None,
) -> dict[str, str | int | float | bool]:
    start_time = time.perf_counter()
    _determinism(options.seed)
    compute_dtype = resolve_calibration_dtype(options.calibration_dtype, options.device)
    dtype = torch.bfloat16 if compute_dtype == "bfloat16" else torch.float32
    device = torch.device(options.device)
    model = build_calibration_skeleton(config)
    buffers_to_device(model, device)
    mapper = CheckpointKeyMapper(model)
    prefix, blocks = find_blocks(model)
    block_keys, outside = split_block_keys(source, mapper, prefix, len(blocks))

    ids, info = calibration_ids(model_dir, options, int(getattr(config, "vocab_size", 0) or 1 << 16), stream)
    batch = max(1, min(ids.shape[0], TOKENS_PER_BATCH // options.seq_len))
    chunks = [c.to(device) for c in ids.split(batch)]
    fingerprint = hashlib.sha256(json.dumps({
        "options": options.model_dump(mode="json", exclude={"resume"}),
        "compute_dtype": compute_dtype,
        "source": source_fingerprint(model_dir),
        "calibration": info,
        "algorithm": ALGORITHM,
    }, sort_keys=True, default=str).encode()).hexdigest()  # fmt: skip
    work = WorkDir(out_path, fingerprint)
    done = work.start(options.resume)

    outside_modules = materialise_outside(model, blocks, source, outside, roles, dtype, device)
    captured = capture_inputs(model, blocks, chunks, keep_hidden=done == 0)
    release_outside(outside_modules)
    hidden = captured.hidden if done == 0 else work.load_hidden()
    assert hidden is not None
    hidden = hidden.to(device=device, dtype=dtype)
    # the full-precision model's activations, the tuning's targets: equal to the coded stream's before block 0
    tuning = options.tune_epochs > 0
    reference = (hidden.clone() if done == 0 else work.load_reference().to(device=device, dtype=dtype)) if tuning else None

    bar = tqdm(total=len(blocks), initial=done, desc="calibrate", unit="block", disable=bar_disabled(progress))
    try:
        for i in range(done, len(blocks)):
            block = blocks[i]
            materialise(block, dtype, device)
            state = {}
            passthrough: dict[str, tuple[torch.Tensor, str]] = {}
            for k in block_keys[i]:
                t = source.load(k)
                if not roles[k].quantize:
                    t = passthrough_tensor(t, options)
                    passthrough[k] = (t, roles[k].role)
                state[k] = t
            load_checkpoint_tensors(model, {k: t.to(device) for k, t in state.items()}, dtype)
            del state
            coder = BlockCoder(model, block, prefix, block_keys[i], mapper, roles, options, dtype,
                               replay_budget_bytes=hidden.numel() * hidden.element_size())
            with torch.no_grad():
                # the block still holds its original weights: the full-precision stream's next inputs
                target = coder.run(reference, captured.kwargs[i], batch, stop_early=False, replay=False) if reference is not None else None
                results = coder.code(hidden, captured.kwargs[i], batch, source, bar)
                replay, tuned = True, False
                if target is not None:
                    if bar is not None:
                        bar.set_postfix_str("tune")
                    tuned = coder.tune(hidden, target, captured.kwargs[i], batch, results, passthrough)
                    if tuned:
                        coder.cache.clear()  # outputs kept while coding came from the untuned weights
                        replay = False
                    reference = target
                hidden = coder.run(hidden, captured.kwargs[i], batch, stop_early=False, replay=replay)
            coder.cache.clear()  # the kept outputs go before the block is written, not after
            assert hidden is not None
            # what finished blocks record (tuned, fallbacks) is kept with them, so a resumed run reports all of it
            work.finish_block(i, results, {k: (t.cpu(), r) for k, (t, r) in passthrough.items()}, hidden.cpu(),
                              None if reference is None else reference.cpu(), tuned, coder.fallbacks)
            release(block)
            del coder, results, passthrough
            return_freed_memory()
            bar.update(1)
    finally:
        bar.close()
        work.flush()  # the last block's files, written in the background, are on disk (or their error is raised)
    del hidden, reference
    fallbacks = dict(work.fallbacks)

    # every tensor to the writer, in key order, from the source or the work directory
    finished: dict[str, tuple[str, Any, str, str | None]] = {}
    key_block = {k: i for i, ks in block_keys.items() for k in ks}
    loaded_block = -1
    for key in source.keys():
        if key in key_block:
            if key_block[key] != loaded_block:
                loaded_block = key_block[key]
                finished = {n: (kind, v, role, d) for n, kind, v, role, d in work.read_block(loaded_block)}
            kind, value, role, digest = finished[key]
            if kind == "quantized":
                writer.add_quantized(key, value, role, digest)  # type: ignore[arg-type]
            else:
                writer.add_passthrough(key, value, role)
        else:
            role_ = roles[key]
            tensor = source.load(key)
            if role_.quantize:
                add_datafree(writer, key, tensor, role_, options)
                fallbacks[key] = "outside the decoder blocks: data-free coding"
            else:
                writer.add_passthrough(key, passthrough_tensor(tensor, options), role_.role)
    work.remove()
    if progress:
        tqdm.write(f"calibrated compression: {time.perf_counter() - start_time:.1f} s")
    result: dict[str, str | int | float | bool] = {
        "algorithm": ALGORITHM,
        **info,
        "act_order": options.act_order,
        "damp": options.damp,
        "refit_grid": options.refit_grid,
        "incoherence": options.incoherence,
        "tune_epochs": options.tune_epochs,
        "compute_dtype": compute_dtype,
        "device": device.type,
        "blocks": len(blocks),
        "block_list": prefix,
        "fallback_tensors": len(fallbacks),
    }
    if tuning:
        result["tuned_blocks"] = len(work.tuned)
    if fallbacks:
        result["fallbacks"] = json.dumps(fallbacks, sort_keys=True)
    return result
