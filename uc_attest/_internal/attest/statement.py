"""in-toto Statement v1: the signed document that binds subjects (files by digest) to a predicate.

The payload is serialised once, deterministically (sorted keys, no
whitespace, UTF-8, no NaN/Infinity), so that the same statement always gives the
same bytes and golden files stay stable. Verifiers never re-serialise: they
parse the exact bytes whose signature they checked.
"""

from __future__ import annotations

import json
from typing import Any, Final, Literal

from pydantic import Field, ValidationError, model_validator

from ..digests import Sha256Hex
from ..pack.strict_json import StrictFrozenModel as _Model, first_validation_error, loads_strict_as
from .errors import StatementError

STATEMENT_TYPE: Final = "https://in-toto.io/Statement/v1"


class DigestSet(_Model):
    """The digests of one subject; this project always uses (and requires) SHA-256."""

    sha256: Sha256Hex


class Subject(_Model):
    """An in-toto ResourceDescriptor reduced to what this project writes: a name and a digest."""

    name: str = Field(min_length=1, max_length=1024)
    digest: DigestSet


class Statement(_Model):
    """An in-toto Statement v1 whose predicate is kept as plain JSON until its type is known."""

    type: Literal["https://in-toto.io/Statement/v1"] = Field(default=STATEMENT_TYPE, alias="_type")
    subject: list[Subject] = Field(min_length=1)
    predicate_type: str = Field(alias="predicateType", min_length=1)
    predicate: dict[str, Any]

    @model_validator(mode="after")
    def _unique_subjects(self) -> Statement:
        names = [s.name for s in self.subject]
        if len(set(names)) != len(names):
            raise ValueError("a subject name appears twice")
        return self

    def subject_digests(self) -> dict[str, str]:
        """``{name: sha256}`` for every subject."""
        return {s.name: s.digest.sha256 for s in self.subject}

    def to_payload(self) -> bytes:
        """The canonical payload bytes that get signed."""
        return canonical_json(self.model_dump(by_alias=True, mode="json"))


def canonical_json(obj: Any) -> bytes:
    """Deterministic compact JSON: sorted keys, no insignificant whitespace, UTF-8, finite numbers only."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def parse_statement(payload: bytes) -> Statement:
    """Parse verified payload bytes as a Statement, refusing duplicate keys, NaN and unknown fields."""
    data = loads_strict_as(payload, "attestation payload", StatementError)
    if not isinstance(data, dict):
        raise StatementError("attestation payload is not a JSON object")
    if data.get("_type") != STATEMENT_TYPE:
        raise StatementError(f"payload is not an in-toto Statement v1 (_type={data.get('_type')!r})")
    try:
        return Statement.model_validate(data)
    except ValidationError as exc:
        raise StatementError(f"malformed in-toto statement: {first_validation_error(exc)}") from None
