"""Tokenising evaluation text once, and the token file carried with an attestation.

The vendor tokenises; the customer evaluates exactly the same ids from the token
file (pinned by its SHA-256), so no tokenizer difference can move the result.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as save_safetensors

from ..atomic import write_bytes_atomic
from ..errors import UnreadableInputError, UsageError
from ..pack.decode import slot_tensor
from ..pack.safetensors_strict import SafetensorsFormatError, parse_safetensors
from ..pack.verified import VerifiedPack
from ..safe_io import read_regular_file

TOKENS_KEY = "input_ids"
MAX_TOKEN_FILE_BYTES = 256 << 20  # 32M int64 ids: far more than any evaluation scores
TOKEN_FILE_HEADER_BYTES = 1 << 16  # safetensors header and metadata of a token file


def token_file_limit(token_count: int) -> int:
    """The largest token file that can hold ``token_count`` ids (the signed count bounds what is read)."""
    return 8 * max(0, token_count) + TOKEN_FILE_HEADER_BYTES


def tokenize_text(tokenizer_dir: str | os.PathLike[str], text: str) -> torch.Tensor:
    """Token ids (1-D int64) of ``text`` with the tokenizer files in ``tokenizer_dir`` (an unsigned directory)."""
    return tokenize_with(_load_tokenizer(Path(tokenizer_dir), str(tokenizer_dir)), text)


def verified_tokenizer(verified: VerifiedPack) -> Any:
    """The pack's tokenizer built from the config and tokenizer bytes the verification pass hashed.

    Nothing is read from the pack again: the bytes are written to a private
    temporary directory (transformers loads tokenizers from a directory only)
    and loaded from there, so the tokenizer used is the one whose SHA-256 was
    checked, even if the pack's files change after verification.
    """
    files = {name: verified.small_file(name) for name in sorted(verified.small_files)}  # refuses a pack that did not verify
    with tempfile.TemporaryDirectory(prefix="uc-attest-tokenizer-") as tmp:
        for name, data in files.items():
            target = Path(tmp) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return _load_tokenizer(Path(tmp), f"the verified pack {verified.root}")


def tokenize_with(tokenizer: Any, text: str) -> torch.Tensor:
    """Token ids (1-D int64) of ``text``; no special tokens are added (the method scores the text as it is)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "sequence longer than max length" warning does not apply
    try:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    finally:
        hf_logging.set_verbosity(verbosity)
    return torch.tensor(ids, dtype=torch.int64)


def _load_tokenizer(directory: Path, where: str) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(directory))
    except (OSError, ValueError) as exc:
        raise UnreadableInputError(f"cannot load the tokenizer from {where}: {exc}") from exc


def token_file_bytes(ids: torch.Tensor, metadata: dict[str, str]) -> bytes:
    return save_safetensors({TOKENS_KEY: ids.to(torch.int64).contiguous()}, metadata=dict(metadata))


def save_token_file(path: str | os.PathLike[str], ids: torch.Tensor, metadata: dict[str, str]) -> str:
    """Write the token file atomically; return its SHA-256 hex."""
    data = token_file_bytes(ids, metadata)
    write_bytes_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def load_token_file(path: str | os.PathLike[str], limit: int = MAX_TOKEN_FILE_BYTES) -> tuple[torch.Tensor, dict[str, str], str]:
    """(ids, metadata, sha256 hex) from one read of the file; a file over ``limit`` bytes is refused unread."""
    p = Path(path)
    try:
        data = read_regular_file(p, limit)
    except FileNotFoundError as exc:
        raise UsageError(f"no such token file: {p}") from exc
    except OSError as exc:
        raise UnreadableInputError(f"cannot read token file {p}: {exc}") from exc
    digest = hashlib.sha256(data).hexdigest()
    try:
        view = parse_safetensors(data, p.name)
    except SafetensorsFormatError as exc:
        raise UnreadableInputError(str(exc)) from exc
    if set(view.tensors) != {TOKENS_KEY}:
        raise UnreadableInputError(f"{p.name}: a token file holds exactly one tensor '{TOKENS_KEY}'")
    ids = slot_tensor(view, TOKENS_KEY)
    if ids.dtype != torch.int64 or ids.ndim != 1:
        raise UnreadableInputError(f"{p.name}: token ids must be a 1-D int64 tensor")
    return ids, view.metadata, digest
