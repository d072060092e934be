"""The source model: an uncompressed Hugging Face safetensors directory, read one tensor at a time.

What ``uc compress`` reads (the compressor's input, coded block by block) and
what ``attest sign --baseline`` and ``uc eval`` measure beside a pack. Neither
layer owns it: it sits below both (compress -> evaluate -> here), beside
``model_files.py``, which hashes the same directory's files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from .errors import UnreadableInputError, UsageError


class SafetensorsSource:
    """Key -> shard map of a model directory; tensors are loaded individually through ``safe_open``."""

    def __init__(self, model_dir: str | Path) -> None:
        self.root = Path(model_dir)
        if not self.root.exists():
            raise UsageError(f"no such model directory: {self.root}")
        if not self.root.is_dir():
            raise UsageError(f"not a model directory: {self.root}")
        if not (self.root / "config.json").is_file():
            raise UnreadableInputError(f"not a Hugging Face model directory: {self.root} has no config.json")
        index = self.root / "model.safetensors.index.json"
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            except (ValueError, KeyError) as exc:
                raise UnreadableInputError(f"{index.name} is not a valid safetensors index") from exc
            files = sorted(set(weight_map.values()))
        else:
            files = sorted(p.name for p in self.root.glob("*.safetensors"))
        if not files:
            raise UnreadableInputError(f"{self.root} holds no safetensors weights (only safetensors is accepted)")
        self.key_file: dict[str, str] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._dtypes: dict[str, str] = {}
        for name in files:
            try:
                with safe_open(str(self.root / name), framework="pt") as handle:
                    for key in handle.keys():
                        sl = handle.get_slice(key)
                        self.key_file[key] = name
                        self._shapes[key] = tuple(sl.get_shape())
                        self._dtypes[key] = sl.get_dtype()
            except Exception as exc:  # noqa: BLE001 - safetensors raises several types
                raise UnreadableInputError(f"{name}: not a readable safetensors file ({exc})") from exc

    def keys(self) -> list[str]:
        return sorted(self.key_file)

    def shape(self, key: str) -> tuple[int, ...]:
        return self._shapes[key]

    def load(self, key: str) -> torch.Tensor:
        with safe_open(str(self.root / self.key_file[key]), framework="pt") as handle:
            return handle.get_tensor(key)

    def load_dtype(self, config: Any) -> torch.dtype:
        """The dtype ``from_pretrained(dtype="auto")`` loads this model in: the config's, else the first floating tensor's."""
        stated = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
        if isinstance(stated, torch.dtype):
            return stated
        if isinstance(stated, str) and isinstance(getattr(torch, stated, None), torch.dtype):
            return getattr(torch, stated)
        for key in self.keys():
            dtype = _SAFETENSORS_DTYPES.get(self._dtypes[key])
            if dtype is not None and dtype.is_floating_point:
                return dtype
        return torch.float32


_SAFETENSORS_DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32, "F64": torch.float64}
