"""Typed errors that carry the process exit code the CLI must use.

Exit codes are part of the contract with customers' automation:
0 success, 1 a verification failure (the artifact was tampered with or does not
match what was attested), 2 usage errors or input that cannot be read at all.
Every error the CLI can meet is one of these, so that it prints one line and
never a traceback. Line 1 (``error: ...``) and the exit code are the contract;
an error may add a second line, ``hint: ...``, saying what to do about it
(automation keeps reading line 1 only).
"""

from __future__ import annotations


class UcError(Exception):
    """Base class: an error with a one-line message and an exit code."""

    exit_code: int = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = " ".join(hint.split()) if hint else None

    def __str__(self) -> str:  # one line, always
        return " ".join(self.message.split())


class UsageError(UcError):
    """Bad arguments or input that is not what it claims to be (exit 2)."""

    exit_code = 2


class UnreadableInputError(UcError):
    """Input that cannot be parsed as the expected artifact (exit 2)."""

    exit_code = 2


class VerificationError(UcError):
    """The artifact was read but does not match what it must be (exit 1)."""

    exit_code = 1


def more_than_shown(total: int, shown: int) -> str:
    """`` (+N more)`` when a one-line message shows ``shown`` of ``total`` problems, else nothing: the one spelling of it."""
    return f" (+{total - shown} more)" if total > shown else ""
