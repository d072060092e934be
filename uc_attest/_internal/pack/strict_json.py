"""Strict JSON parsing for untrusted input.

Python's json module accepts duplicate keys (last one wins), NaN and Infinity, and
recurses without bound. A signed or hashed document must have exactly one
meaning, so all three are refused here.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import UcError, UnreadableInputError

MAX_DEPTH = 64


class StrictFrozenModel(BaseModel):
    """Base of the signed JSON formats (DSSE envelope, Sigstore bundle, in-toto statement, VSA): no unknown
    field accepted, JSON names or Python names on input, immutable once parsed."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _finite(text: str) -> float:
    """A JSON number as a float, refused when it overflows to infinity (``1e400``): NaN/Infinity by another spelling."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of the float range")
    return value


def _depth_ok(text: str, limit: int) -> bool:
    depth = 0
    in_string = False
    escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def loads_strict(data: bytes | str, what: str, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON, refusing duplicate keys, NaN/Infinity (also as a number that overflows), bad UTF-8 and deep nesting."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise UnreadableInputError(f"{what}: not valid UTF-8") from exc
    if not _depth_ok(text, max_depth):
        raise UnreadableInputError(f"{what}: JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants, parse_float=_finite)
    except (ValueError, RecursionError) as exc:
        raise UnreadableInputError(f"{what}: invalid JSON ({exc})") from exc


def loads_strict_as(data: bytes | str, what: str, error: type[UcError]) -> Any:
    """:func:`loads_strict`, its refusal retyped as ``error`` (a bundle is a bundle error, a payload a statement error)."""
    try:
        return loads_strict(data, what)
    except UnreadableInputError as exc:
        raise error(str(exc)) from None


def first_validation_error(exc: ValidationError) -> str:
    """A pydantic refusal of parsed JSON as one line: ``where: why`` of its first error."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()))
    return f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid"))


def dumps_canonical(obj: Any) -> bytes:
    """Stable JSON bytes: sorted keys, two-space indent, UTF-8, trailing newline."""
    return (json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
