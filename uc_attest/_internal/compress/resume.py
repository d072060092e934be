"""The work directory of a calibrated compression, for restarts.

``<out>.partial-work/`` beside the output holds, after each finished block:
``block-NNNNN.safetensors`` (its codec tensors and passthrough tensors, with a
JSON description in the safetensors metadata), ``inputs-NNNNN.safetensors``
(the captured inputs of block NNNNN, the next one) and ``state.json`` (the
fingerprint of the run and the number of finished blocks). Each file is
written to a temporary name and renamed, state.json last, and the previous
block's inputs are removed only after it, so an interruption at any point
leaves a consistent state: state.json names N finished blocks, and the inputs
of block N are on disk under their own name. (Version 1 kept one
``hidden.safetensors``, replaced before state.json: an interruption between
the two renames resumed block N from block N's own outputs.) Nothing is
pickled.

The files of a finished block are written by a background thread while the
next block is coded (:class:`_BackgroundWrites`): writing and syncing the
activations (tens of megabytes a block) cost 7.9 of 185 s of a SmolLM2
compression while the CPU waited for the disk. One write is in flight at a
time and in order, so the rule above holds; its error surfaces at the next
block or at :meth:`WorkDir.flush`.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as save_safetensors

from ..atomic import write_bytes_atomic
from ..codec.encoded import EncodedTensor
from ..codec.params import CodecParams

STATE_VERSION = 2  # 2: the activations file is named by the block it feeds (version-1 work is not resumed)


def work_dir_for(out: Path) -> Path:
    return out.parent / f"{out.name}.partial-work"


class _BackgroundWrites:
    """One job at a time on a background thread, in submission order; a job's exception is raised by the next wait."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, job: Callable[[], None]) -> None:
        self.wait()
        self._thread = threading.Thread(target=self._run, args=(job,), name="uc-work-dir-writer")
        self._thread.start()

    def _run(self, job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as exc:  # handed to the main thread by wait()
            self._error = exc

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


class WorkDir:
    def __init__(self, out: Path, fingerprint: str) -> None:
        self.root = work_dir_for(Path(out))
        self.fingerprint = fingerprint
        self._writes = _BackgroundWrites()
        self.completed = 0  # finished blocks on disk (as state.json says once the writes are flushed)
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
                self.completed = done
                return done
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)
        self._write_state(0)
        self.completed = 0
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
        if done and not self.inputs_path(done).is_file():
            return None
        return done, state

    def _state_bytes(self, completed: int) -> bytes:
        return json.dumps({"version": STATE_VERSION, "fingerprint": self.fingerprint, "completed": completed,
                           "tuned": self.tuned, "fallbacks": self.fallbacks}, sort_keys=True).encode()  # fmt: skip

    def _write_state(self, completed: int) -> None:
        write_bytes_atomic(self.root / "state.json", self._state_bytes(completed))

    # -- blocks ------------------------------------------------------------
    def block_path(self, index: int) -> Path:
        return self.root / f"block-{index:05d}.safetensors"

    def inputs_path(self, index: int) -> Path:
        """The activations block ``index`` reads (and, when tuning, the full-precision stream's)."""
        return self.root / f"inputs-{index:05d}.safetensors"

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
        """Persist a finished block and the next block's inputs (and the full-precision stream's, when tuning), then advance the state.

        The files are serialised here and written in the background (see the
        module docstring): the caller may go on with the next block at once.
        """
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
        block = save_safetensors(tensors, metadata={"entries": json.dumps(meta, sort_keys=True)})
        streams = {"hidden": hidden.contiguous()} | ({"reference": reference.contiguous()} if reference is not None else {})
        activations = save_safetensors(streams)
        del tensors, streams
        if tuned:
            self.tuned.append(index)
        self.fallbacks.update(fallbacks or {})
        state = self._state_bytes(index + 1)
        files = [(self.block_path(index), block), (self.inputs_path(index + 1), activations), (self.root / "state.json", state)]
        stale = self.inputs_path(index)
        self.completed = index + 1

        def write() -> None:
            while files:  # each file's bytes are dropped once written
                path, data = files.pop(0)
                write_bytes_atomic(path, data)
                del data
            stale.unlink(missing_ok=True)  # only now that state.json no longer names it

        self._writes.submit(write)

    def flush(self) -> None:
        """Wait until every finished block is on disk; raises the error of a write that failed."""
        self._writes.wait()

    def load_hidden(self) -> torch.Tensor:
        """The inputs of the first block not finished."""
        return self._load_inputs("hidden")

    def load_reference(self) -> torch.Tensor:
        """The full-precision stream's inputs to the next block (written only by a tuning run)."""
        return self._load_inputs("reference")

    def _load_inputs(self, stream: str) -> torch.Tensor:
        self.flush()
        with safe_open(str(self.inputs_path(self.completed)), framework="pt") as handle:
            return handle.get_tensor(stream)

    def read_block(self, index: int) -> list[tuple[str, str, Any, str, str | None]]:
        """(name, kind, EncodedTensor | tensor, role, digest) of one finished block, in name order."""
        self.flush()
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
        self.flush()
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
