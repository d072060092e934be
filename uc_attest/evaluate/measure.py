"""Measuring perplexity of a verified pack or of a model directory: the entry point sign, check and ``uc eval`` use.

Two paths, one method (uc-ppl-v1), the same NLL per window bit for bit on the
same device and dtype: streaming (default; one decoder block's weights
resident, streaming.py) and whole-model (``--no-streaming``; every tensor
loaded at once, as transformers does). A pack's weights come from the
:class:`VerifiedPack`: pinned to the manifest that was verified (and, when
given, to the signed manifest digest), every rebuilt tensor compared with the
verified digest before use.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..pack.verified import VerifiedPack
from . import loading, perplexity
from .perplexity import EvalResult

if TYPE_CHECKING:
    from .kl import KlResult


@dataclass(frozen=True)
class Measured:
    result: EvalResult
    device: str


def resolve_device(choice: str | None) -> str:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``; refuses a CUDA device that is not there."""
    from ..errors import UsageError

    choice = (choice or "auto").strip().lower()
    if choice == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if choice == "cpu":
        return "cpu"
    if choice == "cuda" or (choice.startswith("cuda:") and choice[5:].isdigit()):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {choice}: no CUDA device is available here (torch {torch.__version__})")
        index = int(choice[5:]) if ":" in choice else 0
        if index >= torch.cuda.device_count():
            raise UsageError(f"--device {choice}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return f"cuda:{index}"
    raise UsageError(f"--device must be auto, cpu, cuda or cuda:N, not {choice!r}")


def measure_pack(verified: VerifiedPack, ids: Any, *, seq_len: int, max_windows: int | None, progress: bool = True,
                 expected_manifest_sha256: str | None = None, streaming: bool = True, device: str = "cpu",
                 compute_dtype: str = "float32") -> Measured:  # fmt: skip
    """Perplexity of the verified pack on ``ids`` (method uc-ppl-v1)."""
    if streaming:
        from ..pack.tensor_reader import VerifiedTensorReader
        from .streaming import evaluate_streaming

        opened = loading.opened_pack(verified, expected_manifest_sha256)
        reader = VerifiedTensorReader(verified)
        result = evaluate_streaming(loading.verified_config(verified), reader.names(), reader.load, ids,
                                    weights_dtype=loading.pack_dtype(opened), seq_len=seq_len, max_windows=max_windows,
                                    compute_dtype=compute_dtype, device=device, progress=progress)  # fmt: skip
        return Measured(result, device)
    model = loading.load_pack_model(verified, expected_manifest_sha256=expected_manifest_sha256).to(device)
    result = perplexity.evaluate_tokens(model, ids, seq_len=seq_len, max_windows=max_windows, compute_dtype=compute_dtype, progress=progress)
    return Measured(result, device)


def measure_model_dir(model_dir: str | os.PathLike[str], ids: Any, *, seq_len: int, max_windows: int | None, progress: bool = True,
                      streaming: bool = True, device: str = "cpu", compute_dtype: str = "float32") -> Measured:  # fmt: skip
    """Perplexity of a plain safetensors model directory (the uncompressed baseline), block by block by default."""
    if not streaming:
        model = loading.load_model_dir(model_dir).to(device)
        result = perplexity.evaluate_tokens(model, ids, seq_len=seq_len, max_windows=max_windows, compute_dtype=compute_dtype, progress=progress)
        return Measured(result, device)
    from .source import SafetensorsSource
    from .streaming import evaluate_streaming

    source = SafetensorsSource(Path(model_dir))
    config = loading.model_dir_config(Path(model_dir))
    result = evaluate_streaming(config, source.keys(), lambda names: {n: source.load(n) for n in names}, ids,
                                weights_dtype=source.load_dtype(config), seq_len=seq_len, max_windows=max_windows,
                                compute_dtype=compute_dtype, device=device, progress=progress)  # fmt: skip
    return Measured(result, device)


def measure_any(path: str | os.PathLike[str], ids: Any, *, seq_len: int, max_windows: int | None, progress: bool = True,
                streaming: bool = True, device: str = "cpu", compute_dtype: str = "float32") -> Measured:  # fmt: skip
    """``uc eval``: a pack (verified first, one pass; measured only when it verifies) or a plain model directory."""
    from ..errors import VerificationError
    from ..pack.manifest import MANIFEST_NAME
    from ..pack.verify import verify_pack

    root = Path(path)
    if not (root / MANIFEST_NAME).exists():
        return measure_model_dir(root, ids, seq_len=seq_len, max_windows=max_windows, progress=progress, streaming=streaming,
                                 device=device, compute_dtype=compute_dtype)  # fmt: skip
    verified = verify_pack(root, progress=progress)
    if not verified.report.ok:
        raise VerificationError(f"the pack does not verify, not measured: {verified.report.failure_summary()}")
    return measure_pack(verified, ids, seq_len=seq_len, max_windows=max_windows, progress=progress, streaming=streaming,
                        device=device, compute_dtype=compute_dtype)  # fmt: skip


@dataclass(frozen=True)
class Compared:
    """``uc eval --reference``: the model's perplexity, the reference's, and KL(reference || model), on the same windows."""

    result: EvalResult
    reference: EvalResult
    kl: "KlResult"
    device: str


def _logits_of(path: Path, windows: Any, *, progress: bool, streaming: bool, device: str, compute_dtype: str) -> Iterator[Any]:
    """Logits per window of a pack (verified first; measured only when it verifies) or of a model directory."""
    from ..errors import VerificationError
    from ..pack.manifest import MANIFEST_NAME
    from ..pack.verify import verify_pack
    from .source import SafetensorsSource
    from .streaming import streaming_logits

    if not (path / MANIFEST_NAME).exists():
        if not streaming:
            return perplexity.whole_model_logits(loading.load_model_dir(path).to(device), windows, compute_dtype, progress)
        source = SafetensorsSource(path)
        config = loading.model_dir_config(path)
        return streaming_logits(config, source.keys(), lambda names: {n: source.load(n) for n in names}, windows,
                                weights_dtype=source.load_dtype(config), compute_dtype=compute_dtype, device=device,
                                progress=progress)  # fmt: skip
    verified = verify_pack(path, progress=progress)
    if not verified.report.ok:
        raise VerificationError(f"{path}: the pack does not verify, not measured: {verified.report.failure_summary()}")
    if not streaming:
        model = loading.load_pack_model(verified).to(device)
        return perplexity.whole_model_logits(model, windows, compute_dtype, progress)
    from ..pack.tensor_reader import VerifiedTensorReader

    opened = loading.opened_pack(verified, None)
    reader = VerifiedTensorReader(verified)
    return streaming_logits(loading.verified_config(verified), reader.names(), reader.load, windows,
                            weights_dtype=loading.pack_dtype(opened), compute_dtype=compute_dtype, device=device,
                            progress=progress)  # fmt: skip


def measure_against_reference(path: str | os.PathLike[str], reference: str | os.PathLike[str], ids: Any, *, seq_len: int,
                              max_windows: int | None, progress: bool = True, streaming: bool = True, device: str = "cpu",
                              compute_dtype: str = "float32") -> Compared:  # fmt: skip
    """Perplexity of ``path`` and of ``reference`` (each a pack or a model directory) and KL(reference || path), window by window."""
    from ..errors import UsageError
    from .kl import compare_logits

    root, ref = Path(path), Path(reference)
    if not ref.is_dir():
        raise UsageError(f"--reference {ref}: not a model directory or pack")
    windows = perplexity.windows_of(ids, seq_len, max_windows)
    mine = _logits_of(root, windows, progress=progress, streaming=streaming, device=device, compute_dtype=compute_dtype)
    theirs = _logits_of(ref, windows, progress=progress, streaming=streaming, device=device, compute_dtype=compute_dtype)
    result, reference_result, kl = compare_logits(windows, mine, theirs, reference_label=ref.resolve().name, compute_dtype=compute_dtype)
    return Compared(result, reference_result, kl, device)
