"""A small reader for the PDF object syntax, with the byte offset of every value it reads.

The signed-report check (:mod:`.signed_layout`) must know *where* each
object and each string sits in the file, not only what a PDF library makes of
it: a library that repairs a damaged cross-reference table, or reads the last
definition of an object, would let an attacker show a viewer one thing and the
verifier another. This reader only parses; it never repairs. Anything it does
not understand is a :class:`PdfSyntaxError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Union

WHITESPACE = b"\x00\t\n\x0c\r "
DELIMITERS = b"()<>[]{}/%"
MAX_DEPTH = 32
"""Nesting our renderer and signer never come near; deeper input is refused, not recursed into."""

_NUMBER = re.compile(rb"[+-]?(?:\d+\.?\d*|\.\d+)")
_REFERENCE = re.compile(rb"(\d+)[\x00\t\n\x0c\r ]+(\d+)[\x00\t\n\x0c\r ]+R(?=[\x00\t\n\x0c\r ()<>\[\]{}/%]|$)")


class PdfSyntaxError(ValueError):
    """The bytes are not PDF object syntax of the kind uc_attest reports contain."""


class Name(str):
    """A PDF name, without its leading slash."""


@dataclass(frozen=True)
class Ref:
    """An indirect reference ``num gen R``."""

    num: int
    gen: int


@dataclass(frozen=True)
class HexString:
    """A hex string ``<...>``: its bytes and where its text starts and ends in the file (``<`` to just past ``>``)."""

    data: bytes
    start: int
    end: int


PdfValue = Union[int, Decimal, bool, None, Name, bytes, HexString, Ref, list["PdfValue"], dict[str, "PdfValue"]]


def skip_space(data: bytes, pos: int) -> int:
    """Past whitespace and comments."""
    while pos < len(data):
        if data[pos] in WHITESPACE:
            pos += 1
        elif data[pos] == 0x25:  # %
            while pos < len(data) and data[pos] not in b"\r\n":
                pos += 1
        else:
            break
    return pos


def _literal_string(data: bytes, pos: int) -> tuple[bytes, int]:
    escapes = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("b"): b"\b", ord("f"): b"\f", ord("("): b"(", ord(")"): b")", ord("\\"): b"\\"}
    out = bytearray()
    depth = 1
    pos += 1
    while pos < len(data):
        c = data[pos]
        if c == 0x5C:  # backslash
            nxt = data[pos + 1 : pos + 2]
            if not nxt:
                break
            if nxt[0] in escapes:
                out += escapes[nxt[0]]
                pos += 2
            elif nxt in b"01234567":
                digits = re.match(rb"[0-7]{1,3}", data[pos + 1 : pos + 4])
                assert digits is not None
                out.append(int(digits.group(), 8) & 0xFF)
                pos += 1 + len(digits.group())
            elif nxt in (b"\r", b"\n"):
                pos += 2 + (nxt == b"\r" and data[pos + 2 : pos + 3] == b"\n")
            else:
                out += nxt
                pos += 2
            continue
        if c == 0x28:
            depth += 1
        elif c == 0x29:
            depth -= 1
            if depth == 0:
                return bytes(out), pos + 1
        out.append(c)
        pos += 1
    raise PdfSyntaxError("unterminated literal string")


def _hex_string(data: bytes, pos: int) -> tuple[HexString, int]:
    end = data.find(b">", pos)
    if end < 0:
        raise PdfSyntaxError("unterminated hex string")
    text = bytes(b for b in data[pos + 1 : end] if b not in WHITESPACE)
    if not re.fullmatch(rb"[0-9A-Fa-f]*", text):
        raise PdfSyntaxError("a hex string holds a character that is not a hex digit")
    if len(text) % 2:
        text += b"0"
    return HexString(bytes.fromhex(text.decode("ascii")), pos, end + 1), end + 1


def _name(data: bytes, pos: int) -> tuple[Name, int]:
    end = pos + 1
    while end < len(data) and data[end] not in WHITESPACE and data[end] not in DELIMITERS:
        end += 1
    raw = data[pos + 1 : end]
    try:
        text = re.sub(rb"#([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), raw).decode("utf-8")
    except UnicodeDecodeError:
        raise PdfSyntaxError("a name is not UTF-8") from None
    return Name(text), end


def parse_value(data: bytes, pos: int, depth: int = 0) -> tuple[PdfValue, int]:
    """The value starting at ``pos`` (after whitespace) and the offset just past it."""
    if depth > MAX_DEPTH:
        raise PdfSyntaxError("objects nested too deeply")
    pos = skip_space(data, pos)
    if pos >= len(data):
        raise PdfSyntaxError("unexpected end of data")
    head = data[pos : pos + 2]
    if head == b"<<":
        out: dict[str, PdfValue] = {}
        pos += 2
        while True:
            pos = skip_space(data, pos)
            if data[pos : pos + 2] == b">>":
                return out, pos + 2
            key, pos = parse_value(data, pos, depth + 1)
            if not isinstance(key, Name):
                raise PdfSyntaxError("a dictionary key is not a name")
            if key in out:
                raise PdfSyntaxError(f"dictionary key /{key} appears twice")
            out[key], pos = parse_value(data, pos, depth + 1)
    if head[:1] == b"[":
        items: list[PdfValue] = []
        pos += 1
        while True:
            pos = skip_space(data, pos)
            if data[pos : pos + 1] == b"]":
                return items, pos + 1
            item, pos = parse_value(data, pos, depth + 1)
            items.append(item)
    if head[:1] == b"(":
        return _literal_string(data, pos)
    if head[:1] == b"<":
        return _hex_string(data, pos)
    if head[:1] == b"/":
        return _name(data, pos)
    ref = _REFERENCE.match(data, pos)
    if ref:
        return Ref(int(ref.group(1)), int(ref.group(2))), ref.end()
    number = _NUMBER.match(data, pos)
    if number:
        text = number.group()
        try:
            return (Decimal(text.decode()) if b"." in text else int(text)), number.end()
        except InvalidOperation:
            raise PdfSyntaxError(f"bad number {text!r}") from None
    for word, value in ((b"true", True), (b"false", False), (b"null", None)):
        if data.startswith(word, pos):
            return value, pos + len(word)
    raise PdfSyntaxError(f"unexpected bytes {data[pos : pos + 12]!r}")


@dataclass(frozen=True)
class IndirectObject:
    """``num gen obj <value> [stream ... endstream] endobj`` at ``start``; ``end`` is just past ``endobj`` and its EOL."""

    num: int
    gen: int
    value: PdfValue
    stream: bytes | None
    start: int
    end: int


_OBJECT_HEADER = re.compile(rb"(\d+) (\d+) obj\r?\n?")
_STREAM_START = re.compile(rb"[\x00\t\x0c ]*stream\r?\n")
_STREAM_END = re.compile(rb"\r?\n?endstream[\r\n \t]*endobj\r?\n")
_OBJECT_END = re.compile(rb"[\x00\t\n\x0c\r ]*endobj\r?\n")


def parse_indirect_object(data: bytes, pos: int) -> IndirectObject:
    """The indirect object written at exactly ``pos`` (its header must start there)."""
    header = _OBJECT_HEADER.match(data, pos)
    if not header:
        raise PdfSyntaxError(f"no object starts at offset {pos}")
    value, after = parse_value(data, header.end())
    stream: bytes | None = None
    start = _STREAM_START.match(data, skip_space(data, after) if isinstance(value, dict) else after)
    if isinstance(value, dict) and start:
        length = value.get("Length")
        if not isinstance(length, int) or length < 0 or start.end() + length > len(data):
            raise PdfSyntaxError(f"object {header.group(1).decode()} has a stream without a usable direct /Length")
        stream = data[start.end() : start.end() + length]
        tail = _STREAM_END.match(data, start.end() + length)
    else:
        tail = _OBJECT_END.match(data, after)
    if not tail:
        raise PdfSyntaxError(f"object {header.group(1).decode()} at offset {pos} does not end with endobj")
    return IndirectObject(int(header.group(1)), int(header.group(2)), value, stream, pos, tail.end())
