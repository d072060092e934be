"""SHA-256 helpers shared by every layer: one streaming file hash, one validated hex type.

Why one module: the project compares SHA-256 values everywhere (pack files,
signed subjects, results, policies), and each copy of a hash loop or a hex
pattern is one more place where a reader could accept ``ABC...`` in one file
and refuse it in another. The types here are what the pydantic models use.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from typing import Annotated

from pydantic import StringConstraints

SHA256_HEX_PATTERN = r"^[0-9a-f]{64}$"
TENSOR_DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"
CHUNK_BYTES = 1 << 20

Sha256Hex = Annotated[str, StringConstraints(pattern=SHA256_HEX_PATTERN)]
"""64 lowercase hex digits (the form ``sha256sum`` prints)."""

TensorDigestText = Annotated[str, StringConstraints(pattern=TENSOR_DIGEST_PATTERN)]
"""``sha256:`` and 64 lowercase hex digits: the digest of a tensor's canonical reconstruction."""


def sha256_chunks(chunks: Iterable[bytes | bytearray | memoryview]) -> str:
    """Hex SHA-256 of the concatenation of ``chunks`` (nothing is kept)."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk_bytes: int = CHUNK_BYTES) -> str:
    """Hex SHA-256 of a file, read in chunks (memory independent of the file's size)."""
    with open(path, "rb") as handle:
        return sha256_chunks(iter(lambda: handle.read(chunk_bytes), b""))


def is_sha256_hex(value: object) -> bool:
    """Whether ``value`` is a :data:`Sha256Hex` string."""
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


__all__ = ["Sha256Hex", "TensorDigestText", "is_sha256_hex", "sha256_chunks", "sha256_file"]
