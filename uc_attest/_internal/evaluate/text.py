"""Built-in calibration and evaluation text, from what every machine has.

Both come from the docstrings of the Python standard library, read with ``ast``
(no module is imported). Source files are split between the two sets by a hash of
their relative path, and any paragraph that occurs in the evaluation set is
removed from the calibration set (paragraphs are also de-duplicated within each
set), so calibration and evaluation never overlap.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import re
import sysconfig
import warnings
from pathlib import Path

EXCLUDED_DIRS = {"test", "tests", "idlelib", "site-packages", "dist-packages", "lib2to3", "__pycache__", "ensurepip", "turtledemo"}
SOURCE_NAME = "python-stdlib-docstrings"


def _stdlib_files() -> list[tuple[str, Path]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if any(part in EXCLUDED_DIRS for part in rel.parts):
            continue
        out.append((rel.as_posix(), path))
    return out


def _docstrings(path: Path) -> list[str]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
        return []
    docs = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc and len(doc) >= 40:
                docs.append(doc.strip())
    return docs


def _is_eval(rel: str) -> bool:
    return hashlib.sha256(rel.encode()).digest()[0] % 4 == 0  # a quarter of the files


def _paragraphs(doc: str) -> list[str]:
    """Blank-line separated paragraphs; short ones (headings, rulers) are dropped."""
    out = []
    for block in re.split(r"\n\s*\n", doc):
        para = block.strip()
        if len(para) >= 40:
            out.append(para)
    return out


@functools.lru_cache(maxsize=1)
def _split() -> tuple[str, str]:
    calibration: list[str] = []
    evaluation: list[str] = []
    for rel, path in _stdlib_files():
        target = evaluation if _is_eval(rel) else calibration
        for doc in _docstrings(path):
            target.extend(_paragraphs(doc))
    evaluation = list(dict.fromkeys(evaluation))  # drop repeats, keep order
    eval_set = set(evaluation)
    calibration = [p for p in dict.fromkeys(calibration) if p not in eval_set]
    return "\n\n".join(calibration), "\n\n".join(evaluation)


def default_calibration_text() -> str:
    return _split()[0]


def default_eval_text() -> str:
    return _split()[1]

MAX_TEXT_FILE_BYTES = 256 << 20  # calibration/evaluation text: far more than any run tokenises


def read_text_file(path: str | Path) -> str:
    """A user-given text file; raises a one-line UsageError when unreadable."""
    from ..errors import UsageError

    from ..safe_io import read_regular_file

    p = Path(path)
    try:
        text = read_regular_file(p, MAX_TEXT_FILE_BYTES, follow_symlinks=True).decode("utf-8")
    except FileNotFoundError as exc:
        raise UsageError(f"no such text file: {p}") from exc
    except OSError as exc:
        raise UsageError(f"cannot read text file {p}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"cannot read text file {p}: {exc}") from exc
    if not text.strip():
        raise UsageError(f"text file {p} is empty")
    return text
