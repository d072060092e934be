"""The encoder benchmark's expensive stages, kept on disk between runs and coded on every core.

Measuring the encoder's rows takes about an hour of CPU, nearly all of it in two
stages that do not depend on the bits-per-weight caps: coding every linear map
in every (width, block size) option, and measuring each coded map's damage on
held-out calibration sentences. Those results are stored under
``build/cache/encoder/`` (safetensors for tensors, JSON for numbers; never
pickle), each file named by a digest of everything it was made from:

* the Hessians: the model file, the calibration sentences, the batching;
* a coded option: the Hessians' digest, the option, and the source text of the
  coder's modules, so that a change to the coder never reuses stale codes;
* a sensitivity: the coded option's digest and the held-out sentences.

So a new cap, or a new option beside the old ones, costs only what is new. The
coder runs one map at a time on one thread (``gptq.single_threaded``), so the
options missing from the cache are coded in one worker process per core; each
worker writes its option's file and the parent reads it back.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = ROOT / "build" / "cache" / "encoder"
Option = tuple[int, int]  # (bits, block size)

# Modules whose code decides a coded option's bits: a change to any of them is a new digest.
CODER_SOURCES = (
    "uc_attest/_internal/compress/gptq.py",
    "uc_attest/_internal/compress/least_squares.py",
    "uc_attest/_internal/compress/hessian.py",
    "uc_attest/_internal/codec/codebook.py",
    "uc_attest/_internal/codec/encoded.py",
    "uc_attest/_internal/codec/reconstruct.py",
    "uc_attest/_internal/codec/canonical.py",
)


def digest(*parts: Any) -> str:
    """Short SHA-256 of a JSON rendering of ``parts`` (lists, strings, numbers)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def coder_digest(root: Path = ROOT) -> str:
    """Digest of the coder's source files (CODER_SOURCES) and of the bench's own call of it.

    The bench's call, ``encoder_mix.code_tensor``, enters by its source text
    alone, so that editing the rest of that module keeps the coded options.
    """
    import inspect

    from bench import encoder_mix

    return digest([(name, file_digest(root / name)) for name in CODER_SOURCES], inspect.getsource(encoder_mix.code_tensor))


class StageCache:
    """Files of one cache folder, each written to a temporary name and renamed, so a killed run leaves none half-written."""

    def __init__(self, root: Path = DEFAULT_ROOT) -> None:
        self.root = root

    def _path(self, name: str, suffix: str) -> Path:
        return self.root / f"{name}{suffix}"

    def _publish(self, target: Path, write: Callable[[Path], None]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            write(tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def tensors(self, name: str) -> tuple[dict[str, torch.Tensor], dict[str, str]] | None:
        """The tensors and string metadata stored under ``name``, or None if absent."""
        path = self._path(name, ".safetensors")
        if not path.is_file():
            return None
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
        return load_file(str(path)), metadata

    def save_tensors(self, name: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
        contiguous = {k: v.detach().contiguous() for k, v in tensors.items()}
        self._publish(self._path(name, ".safetensors"), lambda tmp: save_file(contiguous, str(tmp), metadata=metadata))

    def json(self, name: str) -> Any | None:
        path = self._path(name, ".json")
        return json.loads(path.read_text()) if path.is_file() else None

    def save_json(self, name: str, value: Any) -> None:
        text = json.dumps(value, indent=1, sort_keys=True)
        self._publish(self._path(name, ".json"), lambda tmp: tmp.write_text(text))


def option_name(option: Option) -> str:
    bits, block = option
    return f"{bits}b{block}"


def cached_hessians(
    cache: StageCache, key: str, compute: Callable[[], tuple[dict[str, torch.Tensor], int]]
) -> tuple[dict[str, torch.Tensor], int]:
    """The Hessians and their token count under ``key``, computed once."""
    name = f"hessians-{key}"
    if (found := cache.tensors(name)) is not None:
        tensors, metadata = found
        return tensors, int(metadata["tokens"])
    hessians, tokens = compute()
    cache.save_tensors(name, hessians, {"tokens": str(tokens)})
    return hessians, tokens


def _code_one_option(cache_root: str, inputs_name: str, out_name: str, bits: int, block: int) -> str:
    """Worker: code every map of the inputs file in one option and store the reconstructions and their sizes."""
    torch.set_num_threads(1)
    from bench import encoder_mix as mix

    cache = StageCache(Path(cache_root))
    found = cache.tensors(inputs_name)
    if found is None:
        raise FileNotFoundError(f"{inputs_name} is not in {cache_root}")
    tensors, metadata = found
    tokens = int(metadata["tokens"])
    names = json.loads(metadata["names"])
    coded, sizes = {}, {}
    for name in names:
        ct = mix.code_tensor(tensors[f"weight:{name}"], tensors[f"hessian:{name}"], tokens, bits, block)
        coded[name], sizes[name] = ct.weight, ct.bits_on_disk
    cache.save_tensors(out_name, coded, {"bits_on_disk": json.dumps(sizes)})
    return out_name


def coded_options(
    cache: StageCache, key: str, weights: dict[str, torch.Tensor], hessians: dict[str, torch.Tensor], tokens: int,
    options: Sequence[Option], workers: int | None = None,
) -> dict[str, dict[Option, Any]]:
    """Every map coded in every option, as ``{map: {option: CodedTensor}}``; missing options are coded in parallel.

    ``key`` names the coder's inputs (Hessians and coder source); each option's file adds the option to it.
    """
    from bench import encoder_mix as mix

    names = {option: f"coded-{key}-{option_name(option)}" for option in options}
    missing = [o for o in options if cache.tensors(names[o]) is None]
    if missing:
        inputs_name = f"coder-inputs-{key}"
        if cache.tensors(inputs_name) is None:
            tensors = {f"weight:{n}": w.detach().to(torch.float32) for n, w in weights.items()}
            tensors |= {f"hessian:{n}": h for n, h in hessians.items()}
            cache.save_tensors(inputs_name, tensors, {"tokens": str(tokens), "names": json.dumps(list(weights))})
        count = max(1, min(len(missing), workers or os.cpu_count() or 1))
        with ProcessPoolExecutor(max_workers=count, mp_context=get_context("spawn"), initializer=_worker_path) as pool:
            futures = [pool.submit(_code_one_option, str(cache.root), inputs_name, names[o], *o) for o in missing]
            for future in futures:
                future.result()
    out: dict[str, dict[Option, Any]] = {n: {} for n in weights}
    for option in options:
        found = cache.tensors(names[option])
        assert found is not None
        tensors, metadata = found
        sizes = json.loads(metadata["bits_on_disk"])
        for n in weights:
            out[n][option] = mix.CodedTensor(tensors[n].to(weights[n].dtype), int(sizes[n]))
    return out


def _worker_path() -> None:
    """Spawned workers import ``bench`` and ``uc_attest`` from the repository, as the parent does."""
    import sys

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def cached_sensitivity(
    cache: StageCache, key: str, options: Iterable[Option],
    measure: Callable[[list[Option]], dict[str, dict[Option, float]]],
) -> dict[str, dict[Option, float]]:
    """Per map and option, the damage of that map alone; ``measure`` is called only for options not yet stored."""
    stored = {o: cache.json(f"sensitivity-{key}-{option_name(o)}") for o in options}
    for option in [o for o, v in stored.items() if v is None]:  # one option at a time: an interrupted run keeps the rest
        per_map = {n: damages[option] for n, damages in measure([option]).items()}
        cache.save_json(f"sensitivity-{key}-{option_name(option)}", per_map)
        stored[option] = per_map
    out: dict[str, dict[Option, float]] = {}
    for option, per_map in stored.items():
        for n, damage in per_map.items():  # type: ignore[union-attr]
            out.setdefault(n, {})[option] = float(damage)
    return out
