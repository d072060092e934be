"""Streaming pack writer.

Tensors arrive one at a time; codec tensors and passthrough tensors go into
safetensors shards of bounded size. An open shard's tensors are spooled to disk
as they arrive (pack/safetensors_stream.py), never gathered in memory, and the
shard is written, hashed and renamed into place when it closes, byte for byte
what ``safetensors.torch.save`` writes; so the writer's memory does not grow
with the shard size or the model's depth.
The whole pack is built in a temporary sibling directory and renamed into place
only when the manifest is written (see uc_attest._internal.atomic.atomic_directory).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_directory
from ..codec.encoded import EncodedTensor
from ..codec.reconstruct import DTYPE_NAMES, tensor_digest
from .manifest import (
    MANIFEST_NAME,
    format_version_for,
    CompressionInfo,
    FileEntry,
    ModelInfo,
    PackManifest,
    PackStats,
    PassthroughStorage,
    Producer,
    QuantizedStorage,
    TensorEntry,
)
from ..safe_io import sha256_regular_file
from .safetensors_stream import StreamingSafetensorsFile
from .strict_json import dumps_canonical

DEFAULT_SHARD_BYTES = 256 * 1024 * 1024

def sha256_file(path: Path) -> str:
    return sha256_regular_file(path)[1]


class _Shard:
    """An open shard: its tensors' bytes are on disk (a spool file) as they arrive, never gathered in memory."""

    def __init__(self, root: Path, prefix: str, index: int) -> None:
        self.name = f"{prefix}-{index:05d}.safetensors"
        self.file = StreamingSafetensorsFile(root / self.name, metadata={"format": f"uc-pack-{prefix}"})

    @property
    def nbytes(self) -> int:
        return self.file.nbytes

    def add(self, key: str, tensor: torch.Tensor) -> None:
        self.file.add(key, tensor)


class PackWriter:
    """Collects tensors into shards inside a temporary directory; ``finish`` writes the manifest."""

    def __init__(self, root: Path, shard_bytes: int = DEFAULT_SHARD_BYTES) -> None:
        self.root = root
        self.shard_bytes = shard_bytes
        self.files: list[FileEntry] = []
        self.tensors: list[TensorEntry] = []
        self._open: dict[str, _Shard] = {}
        self._counters: dict[str, int] = {"codec": 0, "passthrough": 0}
        self.quantized_params = 0
        self.passthrough_params = 0
        self.codec_bytes = 0

    # -- shards ---------------------------------------------------------------
    def _shard(self, kind: str, incoming: int) -> _Shard:
        shard = self._open.get(kind)
        if shard is not None and len(shard.file) and shard.nbytes + incoming > self.shard_bytes:
            self._close(kind)
            shard = None
        if shard is None:
            self._counters[kind] += 1
            shard = _Shard(self.root, kind, self._counters[kind])
            self._open[kind] = shard
        return shard

    def _close(self, kind: str) -> None:
        shard = self._open.pop(kind, None)
        if shard is None:
            return
        if not len(shard.file):
            shard.file.discard()
            return
        written = shard.file.close()
        self.files.append(FileEntry(path=shard.name, size=written.size, sha256=written.sha256, role=kind))  # type: ignore[arg-type]

    # -- tensors --------------------------------------------------------------
    def add_quantized(self, name: str, enc: EncodedTensor, role: str, digest: str) -> None:
        codes = torch.from_numpy(np.require(enc.packed_codes, requirements=["C", "W"]))  # spooled at once: no copy unless read-only
        shard = self._shard("codec", enc.codec_nbytes())
        shard.add(f"{name}.codes", codes)
        shard.add(f"{name}.scales", enc.scales)
        shard.add(f"{name}.codebook", enc.codebook)
        storage = QuantizedStorage(file=shard.name, codes=f"{name}.codes", scales=f"{name}.scales", codebook=f"{name}.codebook")
        self.tensors.append(
            TensorEntry(name=name, shape=list(enc.shape), dtype=enc.params.dtype, kind="quantized", role=role,
                        digest=digest, codec=enc.params, storage=storage)
        )  # fmt: skip
        self.quantized_params += enc.numel()
        self.codec_bytes += enc.codec_nbytes()

    def add_passthrough(self, name: str, tensor: torch.Tensor, role: str) -> None:
        tensor = tensor.detach().contiguous()
        shard = self._shard("passthrough", tensor.numel() * tensor.element_size())
        shard.add(name, tensor)
        self.tensors.append(
            TensorEntry(name=name, shape=list(tensor.shape), dtype=DTYPE_NAMES[tensor.dtype], kind="passthrough",  # type: ignore[arg-type]
                        role=role, digest=tensor_digest(tensor), storage=PassthroughStorage(file=shard.name, key=name))
        )  # fmt: skip
        self.passthrough_params += tensor.numel()

    def copy_model_file(self, source: Path, role: str) -> None:
        target = self.root / source.name
        shutil.copyfile(source, target)
        self.files.append(FileEntry(path=source.name, size=target.stat().st_size, sha256=sha256_file(target), role=role))  # type: ignore[arg-type]

    def finish(self, model: ModelInfo, compression: CompressionInfo, version: str) -> PackManifest:
        for kind in list(self._open):
            self._close(kind)
        bpw = (self.codec_bytes * 8 / self.quantized_params) if self.quantized_params else 0.0
        tensors = sorted(self.tensors, key=lambda t: t.name)
        manifest = PackManifest(
            format_version=format_version_for(tensors),
            producer=Producer(version=version),
            model=model,
            compression=compression,
            stats=PackStats(
                quantized_params=self.quantized_params,
                passthrough_params=self.passthrough_params,
                codec_bytes=self.codec_bytes,
                effective_bits_per_weight=round(bpw, 6),
            ),
            files=sorted(self.files, key=lambda f: f.path),
            tensors=tensors,
        )
        data = dumps_canonical(manifest.model_dump(mode="json"))
        with open(self.root / MANIFEST_NAME, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return manifest


__all__ = ["PackWriter", "atomic_directory", "sha256_file"]
