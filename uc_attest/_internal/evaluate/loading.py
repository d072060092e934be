"""Loading a pack (or a plain model directory) as a transformers model.

The pack's shards are read once, hashed, parsed strictly and reconstructed; the
reconstructed tensors are handed to transformers as the model's state dict
without a second copy (transformers adopts their storage), so the model exists
in memory once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ..architecture import causal_lm_class, config_from_bytes, load_config
from ..codec.reconstruct import TORCH_DTYPES
from ..errors import UnreadableInputError, UsageError, VerificationError
from ..pack.decode import decode_shard
from ..pack.reader import Pack, open_pack, read_pack_file
from ..safe_io import special_files_under
from ..pack.verified import VerifiedPack


def _offline() -> None:
    # Loading never needs the network; make sure nothing in transformers tries.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pack_dtype(pack: Pack) -> torch.dtype:
    for t in pack.manifest.tensors:
        if t.kind == "quantized":
            return TORCH_DTYPES[t.dtype]
    return torch.bfloat16


def reconstructed_state_dict(pack: Pack) -> dict[str, torch.Tensor]:
    """Every tensor of the pack, verified (file hash and reconstruction digest) on the way."""
    state: dict[str, torch.Tensor] = {}
    for entry in pack.manifest.files:
        if entry.role not in ("codec", "passthrough"):
            continue
        data, problems = read_pack_file(pack, entry)
        if problems or data is None:
            raise VerificationError(problems[0] if problems else f"{entry.path}: unreadable")
        for decoded in decode_shard(pack, entry, data):
            if decoded.problem:
                raise VerificationError(decoded.problem)
            assert decoded.entry is not None and decoded.tensor is not None
            state[decoded.entry.name] = decoded.tensor
    return state


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers' own "Loading weights" bar and warnings: our callers report progress themselves."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if enabled:
            hf_logging.enable_progress_bar()


def model_from_state_dict(config: Any, state: dict[str, torch.Tensor], dtype: torch.dtype) -> Any:
    _offline()
    cls = causal_lm_class(config)
    with _quiet_transformers():
        model = cls.from_pretrained(None, config=config, state_dict=state, dtype=dtype)
    model.eval()
    return model


def pack_config(pack: Pack) -> Any:
    """The model config, parsed from the very bytes whose SHA-256 matched the manifest."""
    name = pack.manifest.model.config_file
    data, problems = read_pack_file(pack, pack.manifest.file(name))  # the manifest model guarantees it is listed
    if problems or data is None:
        raise VerificationError(problems[0] if problems else f"{name}: unreadable")
    try:
        return config_from_bytes(bytes(data))
    except (ValueError, UnicodeDecodeError) as exc:
        raise VerificationError(f"{name}: {exc}") from exc


def opened_pack(pack: str | os.PathLike[str] | Pack | VerifiedPack, expected_manifest_sha256: str | None = None) -> Pack:
    """The opened pack (from a verified pack: the very manifest that was verified), pinned to a manifest digest."""
    if isinstance(pack, VerifiedPack):
        if not pack.report.ok:
            raise VerificationError("the pack did not verify; it is not loaded")
        opened = pack.pack
    else:
        opened = pack if isinstance(pack, Pack) else open_pack(pack)
    if expected_manifest_sha256 is not None:
        actual = hashlib.sha256(opened.manifest_bytes).hexdigest()
        if actual != expected_manifest_sha256:
            raise VerificationError(f"the manifest read for loading has SHA-256 {actual}, not the expected {expected_manifest_sha256}")
    return opened


def verified_config(pack: Pack | VerifiedPack) -> Any:
    """The config parsed from the bytes the verification pass hashed (or, for a plain pack, read and hashed now)."""
    if not isinstance(pack, VerifiedPack):
        return pack_config(pack)
    name = pack.pack.manifest.model.config_file
    try:
        return config_from_bytes(pack.small_file(name))
    except (ValueError, UnicodeDecodeError) as exc:
        raise VerificationError(f"{name}: {exc}") from exc


def load_pack_model(pack: str | os.PathLike[str] | Pack | VerifiedPack, expected_manifest_sha256: str | None = None) -> Any:
    """A transformers model whose weights are exactly the pack's canonical reconstruction (the whole model in memory).

    Everything used is checked as it is read, from the same bytes: the manifest
    against ``expected_manifest_sha256`` (the signed value, when a caller has
    one), the config and every shard against the manifest's SHA-256, every
    rebuilt tensor against its digest. A pack swapped after an earlier
    verification therefore fails here instead of being measured. Given a
    :class:`VerifiedPack`, the config is the one that pass hashed.
    """
    opened = opened_pack(pack, expected_manifest_sha256)
    config = verified_config(pack if isinstance(pack, VerifiedPack) else opened)
    state = reconstructed_state_dict(opened)
    return model_from_state_dict(config, state, pack_dtype(opened))


def load_model_dir(model_dir: str | os.PathLike[str]) -> Any:
    """A plain Hugging Face safetensors directory (the uncompressed baseline)."""
    _offline()
    root = Path(model_dir)
    if not root.is_dir():
        raise UsageError(f"no such model directory: {root}")
    if not (root / "config.json").is_file():
        raise UnreadableInputError(f"not a Hugging Face model directory: {root} has no config.json")
    special = special_files_under(root)  # transformers opens files itself and would block on a FIFO
    if special:
        raise UnreadableInputError(f"model directory {root}: {special[0]}, not a regular file")
    config = load_config(root / "config.json")
    cls = causal_lm_class(config)
    try:
        with _quiet_transformers():
            model = cls.from_pretrained(str(root), dtype="auto", use_safetensors=True)
    except Exception as exc:  # noqa: BLE001 - a user's directory: transformers fails in many ways on odd files
        raise UnreadableInputError(f"cannot load the model in {root}: {type(exc).__name__}: {exc}") from None
    model.eval()
    return model


def model_dir_config(root: Path) -> Any:
    """The config of a plain model directory (exit 2 when it is not one)."""
    _offline()
    if not root.is_dir():
        raise UsageError(f"no such model directory: {root}")
    if not (root / "config.json").is_file():
        raise UnreadableInputError(f"not a Hugging Face model directory: {root} has no config.json")
    return load_config(root / "config.json")
