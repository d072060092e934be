"""An out-of-domain evaluation text and a varied calibration mix, from what a Debian-family machine has.

Why: the built-in calibration and evaluation texts are both Python docstrings
(disjoint files), so a pack calibrated on one is judged on the very domain it
was calibrated on. The second evaluation text is English legal prose, the
licence texts under ``/usr/share/common-licenses`` (symlinks skipped,
paragraphs de-duplicated: GPL-2 and LGPL-2.1 share whole sections). The
calibration mix adds prose from ``/usr/share/doc`` (READMEs, NEWS, plain-text
manuals; never copyright or licence files) to the docstrings' calibration
split, interleaved in proportion, so that windows evenly spaced over it see
both. No calibration paragraph shares a run of SHINGLE_WORDS words with either
evaluation text (licence boilerplate quoted in a README is dropped with it).
"""

from __future__ import annotations

import functools
import gzip
import io
import re
from collections.abc import Iterable
from typing import Any
from pathlib import Path

from ..safe_io import read_regular_file
from .text import default_calibration_text, default_eval_text

LICENCE_DIR = Path("/usr/share/common-licenses")
INFO_DIR = Path("/usr/share/info")
DOC_DIR = Path("/usr/share/doc")
INFO_SOURCE_NAME = "GNU info manuals of /usr/share/info (prose paragraphs, deduplicated)"
CALIBRATION_SOURCE_NAME = "python-stdlib-docstrings (calibration split) + /usr/share/doc prose + python-stdlib code (calibration split)"
CODE_SHARE = 0.5  # characters of code in the calibration mix, relative to the docstrings'
MAX_CODE_CHARS = 3000  # a longer function or class is cut at a line boundary below this
SHINGLE_WORDS = 8  # a calibration paragraph sharing this many consecutive words with an evaluation text is dropped
DOC_NAMES = re.compile(r"^(readme|news|changes|faq|history|.*\.(txt|md|rst))(\.gz)?$", re.IGNORECASE)
NOT_PROSE = re.compile(r"copyright|licen[cs]e|copying|changelog", re.IGNORECASE)
PARAGRAPHS_PER_FILE = 40  # at most this many paragraphs from one documentation file, so that no package dominates
MAX_FILE_BYTES = 1 << 20
NOT_INFO_PROSE = re.compile(r"^(File: |\* |INFO-DIR|START-INFO|END-INFO|Tag Table|This is .*\.info)", re.MULTILINE)
MAX_PARAGRAPH_CHARS = 4000  # longer "paragraphs" are files without blank lines (tables, logs), not prose


def _normalised(paragraph: str) -> str:
    return " ".join(paragraph.split())


def _paragraphs(text: str, minimum: int = 40) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if len(p.strip()) >= minimum]


@functools.lru_cache(maxsize=1)
def licence_eval_text() -> str:
    """The licence texts, each paragraph once (first occurrence, files in name order); '' where the directory is absent."""
    seen: dict[str, str] = {}
    if LICENCE_DIR.is_dir():
        for path in sorted(LICENCE_DIR.iterdir()):
            if path.is_symlink() or not path.is_file():
                continue
            try:
                text = bytes(read_regular_file(path, MAX_FILE_BYTES)).decode("utf-8", errors="replace")
            except OSError:
                continue
            for para in _paragraphs(text):
                seen.setdefault(_normalised(para), para)
    return "\n\n".join(seen.values())


@functools.lru_cache(maxsize=1)
def info_eval_text() -> str:
    """A third evaluation domain: the prose of the GNU info manuals (technical English), each paragraph once; '' where absent.

    Neither docstrings nor licences: command-line manuals (coreutils, find,
    diffutils, ...). Only prose paragraphs are kept (no menus, node headers or
    examples), in file-name order; the calibration mix shares no run of
    SHINGLE_WORDS words with it.
    """
    seen: set[str] = set()
    per_file: list[list[str]] = []
    if INFO_DIR.is_dir():
        for path in sorted(INFO_DIR.iterdir()):
            if path.is_symlink() or not path.is_file() or ".info" not in path.name:
                continue
            kept = []
            for para in _paragraphs(_read_doc(path).replace("\x1f", "\n\n")):
                key = _normalised(para)
                if key in seen or not _is_prose(para) or NOT_INFO_PROSE.search(para) or NOT_PROSE.search(para):
                    continue
                seen.add(key)
                kept.append(para)
            if kept:
                per_file.append(kept)
    # round-robin over the manuals, so that any prefix of windows samples all of them
    longest = max((len(f) for f in per_file), default=0)
    return "\n\n".join(f[i] for i in range(longest) for f in per_file if i < len(f))


def evaluation_texts() -> list[str]:
    """Every built-in evaluation text: what no calibration paragraph may overlap."""
    return [default_eval_text(), licence_eval_text(), info_eval_text()]


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def shingles(text: str, n: int = SHINGLE_WORDS) -> set[str]:
    """Hashes of every run of ``n`` consecutive words of ``text`` (lower case, punctuation ignored)."""
    words = _words(text)
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def overlaps(paragraph: str, forbidden: set[str], n: int = SHINGLE_WORDS) -> bool:
    words = _words(paragraph)
    return any(" ".join(words[i : i + n]) in forbidden for i in range(len(words) - n + 1))


def _is_prose(paragraph: str) -> bool:
    """Mostly letters and spaces, few code or table characters, several words per line."""
    letters = sum(c.isalpha() or c.isspace() for c in paragraph)
    lines = paragraph.count("\n") + 1
    if len(paragraph) > MAX_PARAGRAPH_CHARS:
        return False
    return letters >= 0.85 * len(paragraph) and len(paragraph.split()) >= 3 * lines


def _read_doc(path: Path) -> str:
    """A documentation file's text; '' for anything unreadable, oversized, not a regular file, or not UTF-8."""
    try:
        raw = bytes(read_regular_file(path, MAX_FILE_BYTES))
        if path.suffix == ".gz":
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as unzipped:
                raw = unzipped.read(MAX_FILE_BYTES * 8 + 1)
            if len(raw) > MAX_FILE_BYTES * 8:
                return ""  # a decompression bomb is not documentation
        return raw.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile):
        return ""


def _doc_files() -> list[Path]:
    if not DOC_DIR.is_dir():
        return []
    out = []
    for path in sorted(DOC_DIR.rglob("*")):
        if path.is_symlink() or not path.is_file() or NOT_PROSE.search(path.name) or not DOC_NAMES.match(path.name):
            continue
        out.append(path)
    return out


def _interleaved(streams: list[list[str]]) -> list[str]:
    """All paragraphs, each stream spread evenly over the result (stable merge on relative position)."""
    keyed = [((i + 0.5) / len(s), k, p) for k, s in enumerate(streams) for i, p in enumerate(s)]
    return [p for _, _, p in sorted(keyed, key=lambda t: (t[0], t[1]))]


def _spread(units: list[str], limit: int) -> list[str]:
    """Every k-th unit (k so that they fit in ``limit`` characters), from all over the list rather than its first files."""
    total = sum(len(u) for u in units)
    if total <= limit or not units:
        return units
    return _capped(units[:: -(-total // max(1, limit))], limit)


def _capped(paragraphs: Iterable[str], limit: int) -> list[str]:
    out, total = [], 0
    for p in paragraphs:
        if total >= limit:
            break
        out.append(p)
        total += len(p)
    return out


_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")  # lines split as the ast module splits them (no form feed)


def _source_segment(lines: list[str], node: Any) -> str:
    """``ast.get_source_segment(source, node) or ""`` on the source's lines split once.

    Why: the ast function splits the whole file again for every node (a
    character loop in Python), which made the calibration text cost 18 CPU-s
    per compression; the offsets are UTF-8 byte columns, as there.
    """
    if node.end_lineno is None or node.end_col_offset is None:
        return ""
    start, end = node.lineno - 1, node.end_lineno - 1
    if start == end:
        return lines[start].encode()[node.col_offset : node.end_col_offset].decode()
    first = lines[start].encode()[node.col_offset :].decode()
    last = lines[end].encode()[: node.end_col_offset].decode()
    return "".join([first, *lines[start + 1 : end], last])


def _code_units() -> list[str]:
    """Functions and classes of the standard library's calibration-split files, docstrings and blank lines removed, in file order.

    Code is a domain of its own (identifiers, operators, indentation) that
    neither evaluation text is; only files of the calibration split are read
    (text._is_eval), so no evaluation docstring's file contributes.
    """
    import ast
    import warnings

    from .text import _is_eval, _stdlib_files

    units: list[str] = []
    for rel, path in _stdlib_files():
        if _is_eval(rel):
            continue
        try:
            source = path.read_text(encoding="utf-8")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ast.parse(source)
        except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
            continue
        source_lines = _LINE.findall(source)
        for node in tree.body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            doc = ast.get_docstring(node, clean=False)
            segment = _source_segment(source_lines, node)
            if doc:
                segment = segment.replace(doc, "", 1)
            lines = [line for line in segment.splitlines() if line.strip() and line.strip() not in ('""""""', "")]
            text = "\n".join(lines)
            if len(text) > MAX_CODE_CHARS:
                text = text[: text.rfind("\n", 0, MAX_CODE_CHARS)]
            if len(text) >= 80:
                units.append(text)
    return units


@functools.lru_cache(maxsize=1)
def calibration_mix_text() -> str:
    """Docstring calibration split, documentation prose and standard-library code, never overlapping any evaluation text.

    Documentation prose takes at most as many characters as the docstrings,
    code at most CODE_SHARE of them; the three are interleaved so that windows
    evenly spaced over the mix see all of them (calibrated.calibration_ids).
    """
    texts = evaluation_texts()
    forbidden = set().union(*(shingles(t) for t in texts))
    eval_paragraphs = {_normalised(p) for p in _paragraphs("\n\n".join(texts), 1)}
    docstrings = [p for p in _paragraphs(default_calibration_text()) if not overlaps(p, forbidden)]
    budget = sum(len(p) for p in docstrings)
    per_file: list[list[str]] = []
    seen: set[str] = set()
    for path in _doc_files():
        kept = []
        for para in _paragraphs(_read_doc(path)):
            key = _normalised(para)
            if key in seen or key in eval_paragraphs or not _is_prose(para) or overlaps(para, forbidden):
                continue
            seen.add(key)
            kept.append(para)
            if len(kept) >= PARAGRAPHS_PER_FILE:
                break
        if kept:
            per_file.append(kept)
    # round-robin over files (first paragraph of every file, then the second, ...) until the budget is spent
    docs = _capped((f[i] for i in range(PARAGRAPHS_PER_FILE) for f in per_file if i < len(f)), budget)
    code = _spread([u for u in dict.fromkeys(_code_units()) if not overlaps(u, forbidden)], int(budget * CODE_SHARE))
    streams = [stream for stream in (docstrings, docs, code) if stream]
    paragraphs = [p for p in _interleaved(streams) if _normalised(p) not in eval_paragraphs]
    return "\n\n".join(paragraphs)
