"""The validated SHA-256 types every on-disk and signed model uses.

Why one module: the project compares SHA-256 values everywhere (pack files,
signed subjects, results, policies), and each copy of a hex pattern is one
more place where a reader could accept ``ABC...`` in one file and refuse it in
another. (Streaming a file's SHA-256 is ``safe_io.sha256_regular_file``, which
also refuses FIFOs and devices.) :func:`diff_files` is the one comparison of
file digests: the pack's files against the signed subjects, a served
directory's pack files against the attested ones, an OMS file list against
the attestation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from pydantic import StringConstraints

SHA256_HEX_PATTERN = r"^[0-9a-f]{64}$"
TENSOR_DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"

Sha256Hex = Annotated[str, StringConstraints(pattern=SHA256_HEX_PATTERN)]
"""64 lowercase hex digits (the form ``sha256sum`` prints)."""

TensorDigestText = Annotated[str, StringConstraints(pattern=TENSOR_DIGEST_PATTERN)]
"""``sha256:`` and 64 lowercase hex digits: the digest of a tensor's canonical reconstruction."""


@dataclass(frozen=True)
class FileDiff:
    """How the files present differ from the expected ``{path: sha256}``: each list sorted by path."""

    missing: list[str]
    extra: list[str]
    differ: list[str]

    @property
    def equal(self) -> bool:
        return not (self.missing or self.extra or self.differ)


def diff_files(expected: Mapping[str, str], present: Mapping[str, str]) -> FileDiff:
    """The one comparison of file digests: what is expected but absent, present but not expected, or other bytes."""
    return FileDiff(
        missing=sorted(set(expected) - set(present)),
        extra=sorted(set(present) - set(expected)),
        differ=sorted(p for p in set(expected) & set(present) if expected[p] != present[p]),
    )


__all__ = ["SHA256_HEX_PATTERN", "TENSOR_DIGEST_PATTERN", "FileDiff", "Sha256Hex", "TensorDigestText", "diff_files"]
