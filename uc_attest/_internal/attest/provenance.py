"""Baseline provenance: the baseline a vendor measures must be the model that was compressed.

``uc compress`` records every source file's SHA-256 in the manifest (see
:mod:`uc_attest._internal.model_files`); the manifest is signed. Here ``attest sign
--baseline`` hashes the baseline directory by the same rules and refuses,
before any measurement, a baseline whose files differ, or a pack that recorded
no source files, unless the vendor gives an explicit override reason; the
reason and the mismatch are then signed in the predicate for every verifier
to see.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError, VerificationError
from ..model_files import ModelFile, differences, model_files
from .predicate import BaselineModelInfo, FileDigest


def baseline_provenance(baseline: Path, pack_source_files: list[ModelFile], override: str | None) -> BaselineModelInfo:
    """The baseline's signed identity, or a one-line refusal (exit 1 for a mismatch, 2 for an empty directory)."""
    found = model_files(baseline)
    if not found:
        raise UsageError(f"baseline {baseline} has no files to hash: nothing would tie the measured model to the pack")
    files = [FileDigest(path=f.path, sha256=f.sha256) for f in found]
    name = baseline.resolve().name
    if not pack_source_files:
        problems = ["the pack records no source files (compressed before uc_attest recorded them)"]
    else:
        problems = differences(pack_source_files, found)
    if not problems:
        if override:
            raise UsageError("--baseline-mismatch-reason is only for a baseline that differs from the pack's source; this one matches")
        return BaselineModelInfo(name=name, files=files, matches_pack_source=True)
    reason = (override or "").strip()
    if not reason:
        raise VerificationError(f"baseline {baseline} is not the model the pack was compressed from: {'; '.join(problems)} "
                                "(give --baseline-mismatch-reason to sign anyway; the reason is signed)")  # fmt: skip
    return BaselineModelInfo(name=name, files=files, matches_pack_source=False, source_override=reason)
