"""When progress bars show: asked for (no --quiet) and stderr is a terminal.

Every long step draws a tqdm bar on stderr with the time left; a log file or a
pipe (CI, a script parsing ``VERIFY: PASS`` on stdout) gets none of the
carriage-return noise. tqdm's ``disable=None`` is exactly "off unless a TTY".
"""

from __future__ import annotations


def bar_disabled(progress: bool) -> bool | None:
    """tqdm's ``disable`` for a step run with ``progress``: None (shown only on a terminal) or True (off)."""
    return None if progress else True


__all__ = ["bar_disabled"]
