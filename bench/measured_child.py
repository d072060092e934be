"""One command in a fresh child process, measured alone: its output, exit code, wall time and rusage.

Why fork and exec by hand rather than ``subprocess``: ``os.wait4`` returns the resource usage of exactly
that child (peak RSS, CPU time), not the sum over every child this process has reaped
(``RUSAGE_CHILDREN``), so two commands measured one after another do not blur together. Shared by
bench/check_memory.py and bench/scale_1b.py.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ChildRun:
    output: str  # what the child wrote to stdout (and stderr, unless it went to a file)
    exit_code: int
    seconds: float  # wall time from before the fork to after the wait
    usage: resource.struct_rusage  # of exactly this child: ru_maxrss (KiB), ru_utime, ru_stime


def run_measured(argv: list[str], env: dict[str, str], cwd: Path, *, stderr_file: Path | None = None, no_stdin: bool = False) -> ChildRun:
    """Exec ``sys.executable`` with ``argv`` (its argv[0] included) in ``cwd``; stderr joins stdout unless ``stderr_file``
    is given; with ``no_stdin`` the child reads /dev/null (no prompt can wait for an answer)."""
    start = time.perf_counter()
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: exec the command with stdout (and stderr) on the pipe
        os.close(out_r)
        os.dup2(out_w, 1)
        if stderr_file is None:
            os.dup2(out_w, 2)
        else:
            os.dup2(os.open(stderr_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 2)
        if no_stdin:
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.chdir(cwd)
        os.execve(sys.executable, argv, env)
    os.close(out_w)
    with os.fdopen(out_r, "r") as reader:
        text = reader.read()
    _, status, usage = os.wait4(pid, 0)
    return ChildRun(text, os.waitstatus_to_exitcode(status), time.perf_counter() - start, usage)
