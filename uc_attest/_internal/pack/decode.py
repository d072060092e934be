"""Decoding a shard, already read and hashed, into checked torch tensors (the loader's path).

Each manifest tensor is parsed strictly from the shard's bytes, reconstructed
by the canonical rule and compared with its digest before anyone may use it.
``uc verify`` does the same checks without torch, streaming (stream_verify.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from ..codec.reconstruct import TORCH_DTYPES, reconstruct, tensor_digest
from .manifest import FileEntry, PassthroughStorage, QuantizedStorage, TensorEntry
from .reader import Pack
from .safetensors_strict import SafetensorsFormatError, TensorSlot, parse_safetensors

TORCH_OF: dict[str, torch.dtype] = {
    "BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16,
    "F16": torch.float16, "BF16": torch.bfloat16, "I32": torch.int32, "F32": torch.float32,
    "I64": torch.int64, "F64": torch.float64,
}  # fmt: skip


def slot_tensor(view: SlotSource, name: str) -> torch.Tensor:
    """A private copy of one stored tensor (the caller may keep it after the buffer goes)."""
    slot = view.tensors[name]
    if slot.dtype not in TORCH_OF:
        raise SafetensorsFormatError(f"{name}: dtype {slot.dtype} is not supported here")
    if slot.end == slot.start:
        return torch.empty(slot.shape, dtype=TORCH_OF[slot.dtype])
    return torch.frombuffer(bytearray(view.raw(name)), dtype=TORCH_OF[slot.dtype]).reshape(slot.shape)


@dataclass
class DecodedTensor:
    """One tensor's outcome; ``entry`` is None for a problem with the shard as a whole."""

    entry: TensorEntry | None
    tensor: torch.Tensor | None
    problem: str | None


class SlotSource(Protocol):
    """What decoding needs of a shard: its slots by key and each slot's bytes (a parsed buffer, or single reads)."""

    @property
    def tensors(self) -> dict[str, TensorSlot]: ...

    def raw(self, name: str) -> bytes | memoryview: ...


def decode_tensor(view: SlotSource, entry: TensorEntry) -> torch.Tensor:
    """One manifest tensor rebuilt from its stored slots (not yet compared with its digest)."""
    storage = entry.storage
    if isinstance(storage, QuantizedStorage):
        assert entry.codec is not None
        for key in (storage.codes, storage.scales, storage.codebook):
            if key not in view.tensors:
                raise ValueError(f"codec tensor {key!r} is missing from {storage.file}")
        codes = slot_tensor(view, storage.codes)
        scales = slot_tensor(view, storage.scales)
        codebook = slot_tensor(view, storage.codebook)
        if codes.dtype != torch.uint8 or codes.ndim != 1:
            raise ValueError("codes must be a flat uint8 tensor")
        if codebook.dtype != torch.float32 or codebook.ndim != 1:
            raise ValueError("codebook must be a flat float32 tensor")
        if not np.isfinite(codebook.numpy()).all():
            raise ValueError("codebook holds NaN or infinity")
        if scales.dtype == torch.float16 and not np.isfinite(scales.numpy()).all():
            raise ValueError("scales hold NaN or infinity")
        return reconstruct(codes.numpy(), codebook, scales, entry.shape, entry.codec)
    assert isinstance(storage, PassthroughStorage)
    if storage.key not in view.tensors:
        raise ValueError(f"tensor {storage.key!r} is missing from {storage.file}")
    tensor = slot_tensor(view, storage.key)
    if tensor.dtype != TORCH_DTYPES[entry.dtype]:
        raise ValueError(f"stored dtype {tensor.dtype} differs from the manifest's {entry.dtype}")
    return tensor


def decode_shard(pack: Pack, file: FileEntry, data: bytearray) -> Iterator[DecodedTensor]:
    """Parse a shard strictly and yield every manifest tensor it stores, reconstructed and checked."""
    entries = pack.tensors_in(file.path)
    try:
        view = parse_safetensors(data, file.path)
    except SafetensorsFormatError as exc:
        yield DecodedTensor(None, None, str(exc))
        for entry in entries:
            yield DecodedTensor(entry, None, f"{entry.name}: its shard {file.path} is not readable")
        return
    referenced: set[str] = set()
    for entry in entries:
        st = entry.storage
        referenced.update((st.codes, st.scales, st.codebook) if isinstance(st, QuantizedStorage) else (st.key,))
    extra = sorted(set(view.tensors) - referenced)
    for entry in entries:
        try:
            tensor = decode_tensor(view, entry)
        except (ValueError, RuntimeError) as exc:
            yield DecodedTensor(entry, None, f"{entry.name}: {exc}")
            continue
        if list(tensor.shape) != entry.shape:
            yield DecodedTensor(entry, None, f"{entry.name}: shape {list(tensor.shape)} differs from {entry.shape}")
            continue
        digest = tensor_digest(tensor)
        if digest != entry.digest:
            yield DecodedTensor(entry, tensor, f"{entry.name}: reconstruction digest {digest} differs from the manifest's")
            continue
        yield DecodedTensor(entry, tensor, None)
    if extra:
        yield DecodedTensor(None, None, f"{file.path}: holds tensors the manifest does not list: {', '.join(extra[:5])}")
