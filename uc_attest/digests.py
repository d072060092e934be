"""The validated SHA-256 types every on-disk and signed model uses.

Why one module: the project compares SHA-256 values everywhere (pack files,
signed subjects, results, policies), and each copy of a hex pattern is one
more place where a reader could accept ``ABC...`` in one file and refuse it in
another. (Streaming a file's SHA-256 is ``safe_io.sha256_regular_file``, which
also refuses FIFOs and devices.)
"""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

SHA256_HEX_PATTERN = r"^[0-9a-f]{64}$"
TENSOR_DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"

Sha256Hex = Annotated[str, StringConstraints(pattern=SHA256_HEX_PATTERN)]
"""64 lowercase hex digits (the form ``sha256sum`` prints)."""

TensorDigestText = Annotated[str, StringConstraints(pattern=TENSOR_DIGEST_PATTERN)]
"""``sha256:`` and 64 lowercase hex digits: the digest of a tensor's canonical reconstruction."""


__all__ = ["SHA256_HEX_PATTERN", "TENSOR_DIGEST_PATTERN", "Sha256Hex", "TensorDigestText"]
