"""Rebuilding a few tensors of a verified pack at a time (one decoder block), each pinned to its verified digest.

Streaming evaluation needs one block's weights at a time, long after the
verification pass, and cannot keep the whole model meanwhile. Each tensor is
read again from its slot (the offsets are those the verification pass parsed
from the shard's header), rebuilt by the canonical rule, and its digest
compared with the one the pass verified (and the signature covers) before it
is handed out. What is used is therefore exactly what was verified; a shard
swapped or edited in between fails with a :class:`VerificationError`.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from ..codec.reconstruct import tensor_digest
from ..errors import VerificationError
from ..safe_io import open_regular_fd
from .decode import decode_tensor
from .paths import check_relative_path
from .safetensors_strict import SafetensorsFormatError, TensorSlot
from .verified import VerifiedPack


@dataclass
class _SlotReads:
    """The ``tensors``/``raw`` interface of a parsed safetensors view, reading single slots with ``pread``."""

    fd: int
    tensors: dict[str, TensorSlot]

    def raw(self, name: str) -> bytes:
        slot = self.tensors[name]
        size = slot.end - slot.start
        data = bytearray()
        while len(data) < size:
            chunk = os.pread(self.fd, size - len(data), slot.start + len(data))
            if not chunk:
                raise VerificationError(f"{name}: its shard is shorter than when it was verified")
            data += chunk
        return bytes(data)


class VerifiedTensorReader:
    """Tensors of a :class:`VerifiedPack`, by manifest name, rebuilt on demand and checked against the verified digests."""

    def __init__(self, verified: VerifiedPack) -> None:
        if not verified.report.ok:
            raise VerificationError("the pack did not verify; its tensors are not handed out")
        self.verified = verified
        self.entries = {t.name: t for t in verified.pack.manifest.tensors}

    def names(self) -> list[str]:
        return sorted(self.entries)

    def load(self, names: Iterable[str]) -> dict[str, torch.Tensor]:
        """The named tensors, each rebuilt from its shard and identical to the verified reconstruction."""
        by_file: dict[str, list[str]] = defaultdict(list)
        for name in names:
            by_file[self.entries[name].storage.file].append(name)
        out: dict[str, torch.Tensor] = {}
        for file, members in sorted(by_file.items()):
            out.update(self._load_from(file, members))
        return out

    def _load_from(self, file: str, names: list[str]) -> dict[str, torch.Tensor]:
        check_relative_path(file)
        slots = self.verified.shard_slots.get(file)
        expected = self.verified.file_digests().get(file)
        if slots is None or expected is None:
            raise VerificationError(f"{file}: not a shard the verification pass read")
        try:
            fd, st = open_regular_fd(self.verified.root / file, follow_symlinks=False)
        except OSError as exc:
            raise VerificationError(f"{file}: cannot be read again after verification ({exc.strerror or exc})") from None
        try:
            if st.st_size != expected.size:
                raise VerificationError(f"{file}: no longer the file of {expected.size} bytes that was verified")
            view = _SlotReads(fd, slots)
            out: dict[str, torch.Tensor] = {}
            for name in names:
                try:
                    tensor = decode_tensor(view, self.entries[name])
                except (ValueError, RuntimeError, SafetensorsFormatError, KeyError) as exc:
                    raise VerificationError(f"{name}: cannot be rebuilt again ({exc})") from None
                self.verified.require_tensor(name, tensor_digest(tensor))
                out[name] = tensor
            return out
        finally:
            os.close(fd)


__all__ = ["VerifiedTensorReader"]
