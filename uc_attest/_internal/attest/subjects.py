"""The statement's subjects: every file of the pack, and the evaluation token file.

Naming rule (also in docs/ATTESTATION.md):

* a pack file is ``pack/<path relative to the pack directory>`` (POSIX
  separators), the manifest ``ucpack.json`` included, so the name does not
  depend on what the customer calls the pack directory;
* the token file is ``eval-tokens.safetensors``, whatever its file name.

A customer check compares the set of ``pack/`` subjects with the set of files
present in the pack directory: equal sets, equal digests, nothing more, nothing
less.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ..pack.paths import check_relative_path
from .errors import StatementError
from .predicate import PACK_SUBJECT_PREFIX, TOKENS_SUBJECT
from .statement import DigestSet, Statement, Subject


def pack_subject_name(relative_path: str) -> str:
    """Subject name of a pack file given by its path relative to the pack directory."""
    return PACK_SUBJECT_PREFIX + check_relative_path(relative_path)


def build_subjects(pack_files: Mapping[str, str], tokens_sha256: str) -> list[Subject]:
    """Subjects for ``{relative path: sha256}`` of the pack plus the token file, sorted by name."""
    subjects = [Subject(name=pack_subject_name(path), digest=DigestSet(sha256=digest)) for path, digest in pack_files.items()]
    subjects.sort(key=lambda s: s.name)
    subjects.append(Subject(name=TOKENS_SUBJECT, digest=DigestSet(sha256=tokens_sha256)))
    return subjects


def split_subjects(statement: Statement) -> tuple[dict[str, str], str]:
    """``({pack relative path: sha256}, tokens sha256)`` from a verified statement.

    Refuses a statement with a subject that is neither a pack file nor the
    token file, or without the token file: both would be ambiguous to check.
    """
    pack: dict[str, str] = {}
    tokens: str | None = None
    for subject in statement.subject:
        if subject.name == TOKENS_SUBJECT:
            tokens = subject.digest.sha256
        elif subject.name.startswith(PACK_SUBJECT_PREFIX):
            rel = subject.name[len(PACK_SUBJECT_PREFIX) :]
            try:
                check_relative_path(rel)
            except ValueError as exc:
                raise StatementError(f"subject {subject.name!r}: {exc}") from None
            pack[rel] = subject.digest.sha256
        else:
            raise StatementError(f"unexpected subject {subject.name!r} (expected pack/<path> or {TOKENS_SUBJECT})")
    if tokens is None:
        raise StatementError(f"the statement has no {TOKENS_SUBJECT} subject")
    if not pack:
        raise StatementError("the statement has no pack files among its subjects")
    return pack, tokens


@dataclass(frozen=True)
class AttestedFiles:
    """The verified statement's subjects, split once: ``{pack path: sha256}`` and the token file's SHA-256.

    Every consumer of the attested file digests (the pack-file check, the
    deployed-directory check, the OMS comparison, the BOM) takes this one
    object, built once from the verified attestation, instead of re-splitting
    the statement.
    """

    files: Mapping[str, str]
    tokens_sha256: str

    @classmethod
    def of(cls, statement: Statement) -> AttestedFiles:
        files, tokens = split_subjects(statement)
        return cls(files=MappingProxyType(files), tokens_sha256=tokens)

