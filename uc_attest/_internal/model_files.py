"""The files of an uncompressed model directory and their SHA-256: the source's identity.

Why: the manifest used to record the source model's name and a note only, and
the baseline digests skipped symlinks, so a Hugging Face cache snapshot (every
file a symlink into ``../../blobs``) was recorded as no files at all and still
measured. Nothing tied the baseline a vendor measured to the model that was
compressed. Now ``uc compress`` records these digests in the manifest (signed
with it) and ``attest sign --baseline`` compares the baseline's with them.

Rules, the same at compress and at sign time:

* every regular file is hashed, hidden ones included; only ``.git`` and
  ``.cache`` directories (version control and download tools' own state, not
  the model) are skipped;
* a symlink is followed when its target resolves inside the *boundary*: the
  model directory itself or, for a cache snapshot
  (``models--ORG--NAME/snapshots/REV``), the cache entry ``models--ORG--NAME``
  whose ``blobs/`` hold the bytes. A symlink that leaves it, a FIFO, socket or
  device is refused: the recorded identity must not depend on files elsewhere;
* files are opened through :mod:`uc_attest._internal.safe_io` (never blocking, streamed).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from .errors import UnreadableInputError, UsageError, more_than_shown
from .safe_io import sha256_regular_file

SKIPPED_DIRS = frozenset({".git", ".cache"})

LOADER_CONFIG_FILES = ("config.json", "generation_config.json", "preprocessor_config.json", "processor_config.json")
LOADER_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "tokenizer.model",
    "spiece.model",
    "chat_template.jinja",
    "chat_template.json",
)
LOADER_FILES = LOADER_CONFIG_FILES + LOADER_TOKENIZER_FILES
"""The non-weight files of a model directory that loaders act on and ``uc compress`` copies into the pack (signed
there); ``uc export`` writes them back, and ``--deployed`` fails on any such file that is not the pack's. Custom code
(``*.py``) is not among them: a pack loads with transformers' built-in architectures only."""


class ModelFile(BaseModel):
    """One file of a model directory: its relative path, size and SHA-256 (hex)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


def symlink_boundary(root: Path) -> Path:
    """Where a symlink under ``root`` may point: the cache entry of a snapshot, else the directory itself."""
    real = root.resolve()
    if real.parent.name == "snapshots" and real.parent.parent.name.startswith("models--"):
        return real.parent.parent
    return real


def _inside(path: Path, boundary: Path) -> bool:
    return path == boundary or boundary in path.parents


def model_files(root: str | os.PathLike[str]) -> list[ModelFile]:
    """Every file of the model directory ``root`` with its size and SHA-256, sorted by path (see the module rules)."""
    base = Path(root)
    if not base.is_dir():
        raise UsageError(f"no such model directory: {base}")
    boundary = symlink_boundary(base)
    out: list[ModelFile] = []
    seen_dirs: set[Path] = set()
    for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
        here = Path(dirpath)
        real_dir = here.resolve()
        if real_dir in seen_dirs or not _inside(real_dir, boundary):  # a symlinked directory loop, or one leading out
            raise UnreadableInputError(f"model directory {base}: {here.relative_to(base).as_posix()} leads outside {boundary}")
        seen_dirs.add(real_dir)
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
        for name in sorted(filenames):
            full = here / name
            rel = full.relative_to(base).as_posix()
            target = full.resolve()
            if not _inside(target, boundary):
                raise UnreadableInputError(f"model directory {base}: {rel} is a symlink to {target}, outside {boundary}")
            try:
                size, digest = sha256_regular_file(target)
            except OSError as exc:
                raise UnreadableInputError(f"model directory {base}: {rel}: {exc.strerror or exc}") from None
            out.append(ModelFile(path=rel, size=size, sha256=digest))
    out.sort(key=lambda f: f.path)
    return out


def differences(recorded: list[ModelFile], found: list[ModelFile], limit: int = 3) -> list[str]:
    """Human-readable differences between two file lists (empty when they are the same files with the same bytes)."""
    a = {f.path: f.sha256 for f in recorded}
    b = {f.path: f.sha256 for f in found}
    out = [f"{p}: missing from the baseline" for p in sorted(set(a) - set(b))]
    out += [f"{p}: not in the compressed source" for p in sorted(set(b) - set(a))]
    out += [f"{p}: SHA-256 differs" for p in sorted(set(a) & set(b)) if a[p] != b[p]]
    more = more_than_shown(len(out), limit).strip()
    return out[:limit] + ([more] if more else [])
