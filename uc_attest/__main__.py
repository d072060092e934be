"""``python -m uc_attest uc|attest|demo ...``: the commands, for an environment without the console scripts on PATH.

The console scripts ``uc`` and ``attest`` (pyproject's [project.scripts]) call
:func:`uc` and :func:`attest` here, so the public spelling of every command
lives in this one module and never names an internal path.
"""

from __future__ import annotations

import sys

USAGE = "usage: python -m uc_attest {uc,attest,demo} [ARGS]...   (the same as the `uc` and `attest` commands; `demo` is `make demo`)"


def uc() -> None:
    """The ``uc`` command: compress, verify, export, inspect, eval."""
    from ._internal.cli.uc import main

    main()


def attest() -> None:
    """The ``attest`` command: keygen, sign, check, bom, report, verify-report, probe."""
    from ._internal.cli.attest import main

    main()


def demo() -> None:
    """``make demo``: the whole story on the embedded SmolLM2-135M, through the real commands."""
    from ._internal.demo import main

    main()


COMMANDS = {"uc": uc, "attest": attest, "demo": demo}


def main(argv: list[str] | None = None) -> None:
    """Dispatch ``argv[0]`` to its command, which reads the rest as its own arguments."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        sys.exit(0 if args and args[0] in ("-h", "--help") else 2)
    sys.argv = [args[0], *args[1:]]
    COMMANDS[args[0]]()


if __name__ == "__main__":
    main()
