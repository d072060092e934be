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
from .settings import EvalSettings

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


def measure_pack(verified: VerifiedPack, ids: Any, settings: EvalSettings, *, expected_manifest_sha256: str | None = None) -> Measured:
    """Perplexity of the verified pack on ``ids`` (method uc-ppl-v1)."""
    if settings.streaming:
        from ..pack.tensor_reader import VerifiedTensorReader
        from .streaming import evaluate_streaming

        opened = loading.opened_pack(verified, expected_manifest_sha256)
        reader = VerifiedTensorReader(verified)
        result = evaluate_streaming(loading.verified_config(verified), reader.names(), reader.load, ids,
                                    weights_dtype=loading.pack_dtype(opened), settings=settings)  # fmt: skip
        return Measured(result, settings.device)
    model = loading.load_pack_model(verified, expected_manifest_sha256=expected_manifest_sha256).to(settings.device)
    return Measured(perplexity.evaluate_tokens(model, ids, settings), settings.device)


def measure_model_dir(model_dir: str | os.PathLike[str], ids: Any, settings: EvalSettings) -> Measured:
    """Perplexity of a plain safetensors model directory (the uncompressed baseline), block by block by default."""
    if not settings.streaming:
        model = loading.load_model_dir(model_dir).to(settings.device)
        return Measured(perplexity.evaluate_tokens(model, ids, settings), settings.device)
    from ..source_model import SafetensorsSource
    from .streaming import evaluate_streaming

    source = SafetensorsSource(Path(model_dir))
    config = loading.model_dir_config(Path(model_dir))
    result = evaluate_streaming(config, source.keys(), lambda names: {n: source.load(n) for n in names}, ids,
                                weights_dtype=source.load_dtype(config), settings=settings)  # fmt: skip
    return Measured(result, settings.device)


def _verified_or_refused(path: Path, progress: bool) -> VerifiedPack:
    """The pack at ``path`` after one verification pass; a pack that does not verify is never measured."""
    from ..errors import VerificationError
    from ..pack.verify import verify_pack

    verified = verify_pack(path, progress=progress)
    if not verified.report.ok:
        raise VerificationError(f"{path}: the pack does not verify, not measured: {verified.report.failure_summary()}")
    return verified


def _is_pack(path: Path) -> bool:
    from ..pack.manifest import MANIFEST_NAME

    return (path / MANIFEST_NAME).exists()


def measure_any(path: str | os.PathLike[str], ids: Any, settings: EvalSettings) -> Measured:
    """``uc eval``: a pack (verified first, one pass; measured only when it verifies) or a plain model directory."""
    root = Path(path)
    if not _is_pack(root):
        return measure_model_dir(root, ids, settings)
    return measure_pack(_verified_or_refused(root, settings.progress), ids, settings)


@dataclass(frozen=True)
class Compared:
    """``uc eval --reference``: the model's perplexity, the reference's, and KL(reference || model), on the same windows."""

    result: EvalResult
    reference: EvalResult
    kl: "KlResult"
    device: str


def _logits_of(path: Path, windows: Any, settings: EvalSettings) -> Iterator[Any]:
    """Logits per window of a pack (verified first; measured only when it verifies) or of a model directory."""
    from .streaming import streaming_logits

    if not _is_pack(path):
        if not settings.streaming:
            return perplexity.whole_model_logits(loading.load_model_dir(path).to(settings.device), windows, settings)
        from ..source_model import SafetensorsSource

        source = SafetensorsSource(path)
        config = loading.model_dir_config(path)
        return streaming_logits(config, source.keys(), lambda names: {n: source.load(n) for n in names}, windows,
                                weights_dtype=source.load_dtype(config), settings=settings)  # fmt: skip
    verified = _verified_or_refused(path, settings.progress)
    if not settings.streaming:
        return perplexity.whole_model_logits(loading.load_pack_model(verified).to(settings.device), windows, settings)
    from ..pack.tensor_reader import VerifiedTensorReader

    opened = loading.opened_pack(verified, None)
    reader = VerifiedTensorReader(verified)
    return streaming_logits(loading.verified_config(verified), reader.names(), reader.load, windows,
                            weights_dtype=loading.pack_dtype(opened), settings=settings)  # fmt: skip


def measure_against_reference(path: str | os.PathLike[str], reference: str | os.PathLike[str], ids: Any, settings: EvalSettings) -> Compared:
    """Perplexity of ``path`` and of ``reference`` (each a pack or a model directory) and KL(reference || path), window by window."""
    from ..errors import UsageError
    from .kl import compare_logits

    root, ref = Path(path), Path(reference)
    if not ref.is_dir():
        raise UsageError(f"--reference {ref}: not a model directory or pack")
    windows = perplexity.windows_of(ids, settings.seq_len, settings.max_windows)
    mine = _logits_of(root, windows, settings)
    theirs = _logits_of(ref, windows, settings)
    result, reference_result, kl = compare_logits(windows, mine, theirs, reference_label=ref.resolve().name,
                                                  compute_dtype=settings.compute_dtype)  # fmt: skip
    return Compared(result, reference_result, kl, settings.device)
