"""The work directory of a calibrated compression, for restarts.

``<out>.partial-work/`` beside the output holds, after each finished block:
``block-NNNNN.safetensors`` (its codec tensors and passthrough tensors, with a
JSON description in the safetensors metadata), ``hidden.safetensors`` (the
captured inputs of the next block) and ``state.json`` (the fingerprint of the
run and the number of finished blocks). Each file is written to a temporary
name and renamed, state.json last, so an interruption at any point leaves a
consistent state. Nothing is pickled.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as save_safetensors

from ..atomic import write_bytes_atomic
from ..codec.encoded import EncodedTensor
from ..codec.params import CodecParams

STATE_VERSION = 1


def work_dir_for(out: Path) -> Path:
    return out.parent / f"{out.name}.partial-work"


class WorkDir:
    def __init__(self, out: Path, fingerprint: str) -> None:
        self.root = work_dir_for(Path(out))
        self.fingerprint = fingerprint
        self.tuned: list[int] = []  # finished blocks whose tuning was kept (compress --tune-epochs)
        self.fallbacks: dict[str, str] = {}  # tensors of finished blocks coded by a fallback, and why

    # -- state -------------------------------------------------------------
    def start(self, resume: bool) -> int:
        """Number of finished blocks to skip (0 unless resuming a matching run)."""
        if resume:
            found = self._completed()
            if found is not None:
                done, state = found
                self.tuned = [int(i) for i in state.get("tuned", []) if int(i) < done]
                self.fallbacks = {str(k): str(v) for k, v in state.get("fallbacks", {}).items()}
                return done
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)
        self._write_state(0)
        return 0

    def _completed(self) -> tuple[int, dict[str, Any]] | None:
        """Finished blocks of a matching run, and its state; None if there is nothing to resume."""
        try:
            state = json.loads((self.root / "state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if state.get("version") != STATE_VERSION or state.get("fingerprint") != self.fingerprint:
            return None
        done = int(state.get("completed", 0))
        if any(not self.block_path(i).is_file() for i in range(done)):
            return None
        if done and not (self.root / "hidden.safetensors").is_file():
            return None
        return done, state

    def _write_state(self, completed: int) -> None:
        data = json.dumps({"version": STATE_VERSION, "fingerprint": self.fingerprint, "completed": completed,
                           "tuned": self.tuned, "fallbacks": self.fallbacks}, sort_keys=True)  # fmt: skip
        write_bytes_atomic(self.root / "state.json", data.encode())

    # -- blocks ------------------------------------------------------------
    def block_path(self, index: int) -> Path:
        return self.root / f"block-{index:05d}.safetensors"

    def finish_block(
        self,
        index: int,
        quantized: dict[str, tuple[EncodedTensor, str, str]],
        passthrough: dict[str, tuple[torch.Tensor, str]],
        hidden: torch.Tensor,
        reference: torch.Tensor | None = None,
        tuned: bool = False,
        fallbacks: dict[str, str] | None = None,
    ) -> None:
        """Persist a finished block and the next block's inputs (and the full-precision stream's, when tuning), then advance the state."""
        tensors: dict[str, torch.Tensor] = {}
        meta: dict[str, Any] = {}
        for name, (enc, role, digest) in quantized.items():
            tensors[f"q/{name}/codes"] = torch.from_numpy(enc.packed_codes.copy())
            tensors[f"q/{name}/scales"] = enc.scales
            tensors[f"q/{name}/codebook"] = enc.codebook
            meta[name] = {"kind": "quantized", "role": role, "digest": digest, "shape": list(enc.shape),
                          "params": enc.params.model_dump(mode="json")}  # fmt: skip
        for name, (tensor, role) in passthrough.items():
            tensors[f"p/{name}"] = tensor.contiguous()
            meta[name] = {"kind": "passthrough", "role": role}
        write_bytes_atomic(self.block_path(index), save_safetensors(tensors, metadata={"entries": json.dumps(meta, sort_keys=True)}))
        streams = {"hidden": hidden.contiguous()} | ({"reference": reference.contiguous()} if reference is not None else {})
        write_bytes_atomic(self.root / "hidden.safetensors", save_safetensors(streams))
        if tuned:
            self.tuned.append(index)
        self.fallbacks.update(fallbacks or {})
        self._write_state(index + 1)

    def load_hidden(self) -> torch.Tensor:
        with safe_open(str(self.root / "hidden.safetensors"), framework="pt") as handle:
            return handle.get_tensor("hidden")

    def load_reference(self) -> torch.Tensor:
        """The full-precision stream's inputs to the next block (written only by a tuning run)."""
        with safe_open(str(self.root / "hidden.safetensors"), framework="pt") as handle:
            return handle.get_tensor("reference")

    def read_block(self, index: int) -> list[tuple[str, str, Any, str, str | None]]:
        """(name, kind, EncodedTensor | tensor, role, digest) of one finished block, in name order."""
        out: list[tuple[str, str, Any, str, str | None]] = []
        with safe_open(str(self.block_path(index)), framework="pt") as handle:
            meta = json.loads(handle.metadata()["entries"])
            for name in sorted(meta):
                entry = meta[name]
                if entry["kind"] == "quantized":
                    enc = EncodedTensor(
                        shape=tuple(entry["shape"]),
                        params=CodecParams(**entry["params"]),
                        packed_codes=handle.get_tensor(f"q/{name}/codes").numpy(),
                        codebook=handle.get_tensor(f"q/{name}/codebook"),
                        scales=handle.get_tensor(f"q/{name}/scales"),
                    )
                    out.append((name, "quantized", enc, entry["role"], entry["digest"]))
                else:
                    out.append((name, "passthrough", handle.get_tensor(f"p/{name}"), entry["role"], None))
        return out

    def remove(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)


def source_fingerprint(root: Path) -> list[tuple[str, int, int]]:
    """Name, size and modification time of every file of the model directory."""
    out = []
    for p in sorted(root.iterdir()):
        if p.is_file():
            st = os.stat(p)
            out.append((p.name, st.st_size, st.st_mtime_ns))
    return out
