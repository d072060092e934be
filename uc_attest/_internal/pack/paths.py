"""Path safety for names that come from a manifest (untrusted input)."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

_SAFE_COMPONENT = re.compile(r"^[A-Za-z0-9._+\-]+$")


def check_relative_path(name: str) -> str:
    """Return ``name`` if it is a plain relative POSIX path inside the pack, else raise ValueError.

    Refuses absolute paths, ``..`` and ``.`` components, backslashes, empty
    components, hidden files and characters outside a conservative set.
    """
    if not name or len(name) > 255:
        raise ValueError(f"bad path {name!r}")
    if "\\" in name or name.startswith("/") or "\x00" in name:
        raise ValueError(f"path {name!r} is absolute or not POSIX")
    parts = PurePosixPath(name).parts
    if "/".join(parts) != name:
        raise ValueError(f"path {name!r} is not normalised")
    for part in parts:
        if part in (".", "..") or part.startswith(".") or not _SAFE_COMPONENT.match(part):
            raise ValueError(f"path {name!r} leaves the pack or uses a forbidden component")
    return name
