"""Check 4: every file in the pack directory against the signed subjects.

The digests come from the verification pass (:class:`VerifiedPack`): each
listed file was read and hashed once there, and is not hashed again here. Only
what that pass does not read is hashed here: files the manifest does not list
(they fail unless the policy tolerates unsigned files), or every file when the
pack could not be opened at all (so the report still says which bytes differ).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..digests import diff_files
from ..errors import VerificationError
from ..safe_io import sha256_regular_file
from .context import CheckContext, failed, passed, skipped
from .results import CheckResult, CheckStatus, FileCheck

NAME = "pack_files"


def present_files(root: Path, known: dict[str, tuple[int, str]]) -> tuple[dict[str, tuple[int, str]], list[str]]:
    """``{relative path: (size, sha256)}`` of every regular file under ``root``, and what else was found.

    Files in ``known`` (already hashed by the verification pass) keep that
    digest; any other regular file is hashed here.
    """
    found: dict[str, tuple[int, str]] = {}
    odd: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in sorted(dirnames):
            if (Path(dirpath) / name).is_symlink():
                odd.append(f"{(Path(dirpath) / name).relative_to(root).as_posix()}: symlinked directory")
        dirnames[:] = sorted(d for d in dirnames if not (Path(dirpath) / d).is_symlink())
        for name in sorted(filenames):
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if full.is_symlink() or not full.is_file():
                odd.append(f"{rel}: not a regular file")
            elif rel in known:
                found[rel] = known[rel]
            else:
                try:
                    found[rel] = sha256_regular_file(full, follow_symlinks=False)
                except OSError as exc:  # swapped for a FIFO or device since the walk: refused, never read
                    odd.append(f"{rel}: {exc.strerror or 'not a regular file'}")
    return found, odd


def _present(ctx: CheckContext) -> tuple[dict[str, tuple[int, str]], list[str]]:
    known = {p: (d.size, d.sha256) for p, d in ctx.verified.file_digests().items()} if ctx.verified is not None else {}
    return present_files(Path(ctx.inputs.pack), known)


def _listing(items: list[str]) -> str:
    return f"{', '.join(items[:3])}{'...' if len(items) > 3 else ''}"


def check_pack_files(ctx: CheckContext) -> CheckResult:
    """Compare; the file rows go to ``ctx.files`` and the signed token digest to ``ctx.attested_tokens``."""
    present, odd = _present(ctx)
    if ctx.attestation is None:
        ctx.files = [FileCheck(path=p, size=s, sha256=h, attested_sha256=None, status=CheckStatus.SKIP) for p, (s, h) in sorted(present.items())]
        return skipped(NAME, "Not checked: without a verified signature there are no signed hashes to compare with.")
    try:
        signed = ctx.attested()
    except VerificationError as exc:
        return failed(NAME, f"The signed statement's subjects cannot be used: {exc}")
    assert signed is not None  # the attestation verified
    attested, ctx.attested_tokens = signed.files, signed.tokens_sha256
    allow_unattested = ctx.policy.weights.allow_unattested_files
    diff = diff_files(attested, {path: sha for path, (_, sha) in present.items()})
    missing, differ, extra = diff.missing, diff.differ, diff.extra
    for path in sorted(set(attested) | set(present)):
        size, sha = present.get(path, (None, None))
        if path in missing or path in differ:
            status = CheckStatus.FAIL
        elif path in extra:
            status = CheckStatus.SKIP if allow_unattested else CheckStatus.FAIL
        else:
            status = CheckStatus.PASS
        ctx.files.append(FileCheck(path=path, size=size, sha256=sha, attested_sha256=attested.get(path), status=status))
    problems = []
    if differ:
        problems.append(f"{len(differ)} file(s) differ from the signed hash: {_listing(differ)}")
    if missing:
        problems.append(f"{len(missing)} signed file(s) are missing: {_listing(missing)}")
    if extra and not allow_unattested:
        problems.append(f"{len(extra)} file(s) are not covered by the signature: {_listing(extra)}")
    if odd:
        problems.append(f"{len(odd)} entries are not regular files: {', '.join(odd[:3])}")
    details = {"files": len(ctx.files), "differ": len(differ), "missing": len(missing), "unsigned": len(extra)}
    if problems:
        return failed(NAME, "; ".join(problems) + ".", details)
    tolerated = f"; {len(extra)} unsigned file(s) tolerated by the policy" if extra else "; no unsigned files"
    return passed(NAME, f"All {len(attested)} signed files are present with the SHA-256 in the signed statement{tolerated}.", details)
