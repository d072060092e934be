"""A pack after one verification pass (``pack/verify.py`` runs the pass; this module holds what it found).

``verify_pack`` reads each file once, hashes it, and rebuilds every tensor
from those same bytes. What it learnt is kept here: the opened pack (the
manifest exactly as hashed), each file's size and SHA-256 as read, each
tensor's digest as rebuilt, and the bytes of the small files (config,
tokenizer) that a later stage parses. Comparing signed subjects, judging
tensors, parsing the config and rebuilding a block for evaluation all go
through this object, so nothing is hashed twice and nothing that is used can
differ from what was checked: a tensor rebuilt again later (streaming
evaluation, block by block) is compared with :meth:`VerifiedPack.require_tensor`
before it is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from ..errors import VerificationError, more_than_shown
from .manifest import MANIFEST_NAME
from .reader import Pack
from .safetensors_strict import TensorSlot


class FileCheck(BaseModel):
    """One listed file: its size and SHA-256 as read, and whether both match the manifest."""

    model_config = ConfigDict(extra="forbid")
    path: str
    size: int
    sha256: str
    ok: bool


class TensorCheck(BaseModel):
    """One tensor: its digest as rebuilt from the verified bytes, and whether it matches the manifest."""

    model_config = ConfigDict(extra="forbid")
    name: str
    kind: str
    role: str
    digest: str
    ok: bool


class VerifyReport(BaseModel):
    """What ``uc verify`` found; ``ok`` is true only when ``failures`` is empty."""

    model_config = ConfigDict(extra="forbid")
    ok: bool
    failures: list[str]
    format: str
    format_version: str
    manifest_sha256: str
    files: list[FileCheck]
    tensors: list[TensorCheck]
    bytes_read: int
    seconds: float
    architecture_checked: bool = False
    tolerated: list[str] = []  # unlisted files and directories the caller's policy tolerates (never read)

    def failure_summary(self) -> str:
        """The first failure and how many more there are: the one line an error or a check row shows."""
        if not self.failures:
            return "no failure"
        return f"{self.failures[0]}{more_than_shown(len(self.failures), 1)}"


@dataclass(frozen=True)
class FileDigest:
    """One file as read by the verification pass."""

    size: int
    sha256: str


@dataclass
class VerifiedPack:
    """The result of ``verify_pack``: the report, the opened pack and the digests as read.

    ``report.ok`` is true only when every file and every tensor matched the manifest
    (and, when asked, the tensor set matched the config). What the pass found is
    read from ``report`` (one place), what later stages use through the methods here.
    """

    pack: Pack
    report: VerifyReport
    small_files: dict[str, bytes] = field(default_factory=dict)  # config and tokenizer files, as hashed
    shard_slots: dict[str, dict[str, TensorSlot]] = field(default_factory=dict)  # each good shard's header as parsed

    @property
    def root(self) -> Path:
        return self.pack.root

    def file_digests(self) -> dict[str, FileDigest]:
        """``{path: digest}`` of every listed file that could be read, plus the manifest itself."""
        out = {f.path: FileDigest(f.size, f.sha256) for f in self.report.files if f.sha256}
        out[MANIFEST_NAME] = FileDigest(len(self.pack.manifest_bytes), self.pack.manifest_sha256)
        return out

    def tensor_digests(self) -> dict[str, str]:
        """``{tensor name: sha256:<hex>}`` of every tensor whose rebuilt digest matched the manifest."""
        return dict(self._digests)

    def require_tensor(self, name: str, digest: str) -> None:
        """Refuse a tensor rebuilt after the pass whose digest is not the one verified."""
        expected = self._digests.get(name)
        if expected is None:
            raise VerificationError(f"{name}: not among the tensors this pack's verification rebuilt")
        if digest != expected:
            raise VerificationError(f"{name}: rebuilt again with digest {digest}, not the verified {expected}: the pack changed after it was verified")

    def small_file(self, path: str) -> bytes:
        """The bytes of a verified config or tokenizer file (exactly those that were hashed)."""
        if not self.report.ok:
            raise VerificationError(f"{path}: the pack did not verify")
        try:
            return self.small_files[path]
        except KeyError:
            raise VerificationError(f"{path}: not a verified file of the pack") from None

    def __post_init__(self) -> None:
        self._digests = {t.name: t.digest for t in self.report.tensors if t.ok}


__all__ = ["FileCheck", "FileDigest", "TensorCheck", "VerifiedPack", "VerifyReport"]
