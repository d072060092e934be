"""Shared CLI plumbing: one-line errors with the right exit code, never a traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from ..errors import UcError
from ..estimate import ModelShape, describe, load_shape

if TYPE_CHECKING:
    from ..evaluate.settings import ComputeDtype, EvalSettings


def fail_line(message: str, hint: str | None = None) -> None:
    """Print the error line on stderr, and the optional ``hint:`` line after it."""
    click.echo(f"error: {' '.join(str(message).split())}", err=True)
    if hint:
        click.echo(f"hint: {' '.join(hint.split())}", err=True)


DEBUG_ENV = "UC_ATTEST_DEBUG"
DEBUG_HINT = "run again with --debug (or UC_ATTEST_DEBUG=1) for the traceback"


def debug_option(function: Callable[..., Any]) -> Callable[..., Any]:
    """``--debug`` on a command group: an unexpected error shows its traceback instead of one line.

    The flag is read by :func:`run_group` from the arguments before the command
    (the option itself only documents and accepts it), as UC_ATTEST_DEBUG is.
    """
    return click.option("--debug", is_flag=True, expose_value=False, is_eager=True,
                        help=f"show the traceback of an unexpected error (as {DEBUG_ENV}=1 does)")(function)  # fmt: skip


def _debug_requested(argv: list[str]) -> bool:
    """``--debug`` among the group's own options (before the command name), or UC_ATTEST_DEBUG set."""
    if os.environ.get(DEBUG_ENV):
        return True
    for arg in argv:
        if arg == "--debug":
            return True
        if not arg.startswith("-"):
            return False  # the command's name: what follows is the command's own arguments
    return False


def run_group(group: click.Group, argv: list[str] | None = None) -> None:
    """Run a click group, mapping every failure to one line and an exit code.

    click's own usage errors exit 2; our UcError carries its exit code (and may
    add a ``hint:`` line); anything else unexpected is still reported on one line
    (exit 2) unless ``--debug`` or UC_ATTEST_DEBUG asks for the traceback.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(args)
    try:
        rc = group.main(args=args, standalone_mode=False, prog_name=group.name)
    except click.exceptions.Abort:
        fail_line("aborted")
        sys.exit(2)
    except click.ClickException as exc:
        fail_line(exc.format_message())
        sys.exit(exc.exit_code if exc.exit_code else 2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except UcError as exc:
        fail_line(str(exc), exc.hint)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        fail_line("interrupted")
        sys.exit(130)
    except MemoryError:
        fail_line("out of memory")
        sys.exit(2)
    except OSError as exc:
        if debug:
            raise
        fail_line(f"{exc.strerror or exc}{': ' + str(exc.filename) if exc.filename else ''}")
        sys.exit(2)
    except Exception as exc:  # noqa: BLE001 - last line of defence: no tracebacks for users
        if debug:
            raise
        fail_line(f"internal error: {type(exc).__name__}: {exc}", DEBUG_HINT)
        sys.exit(2)
    sys.stdout.flush()
    sys.exit(rc if isinstance(rc, int) else 0)


def exit_with(code: int) -> None:
    """Exit from inside a command with ``code`` (standalone_mode=False needs this)."""
    raise click.exceptions.Exit(code)


def trust_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """The vendor's trust anchor: a public key, or a keyless identity (check, probe, verify-report, bom)."""
    options = [
        click.option("--key", "key", type=click.Path(path_type=Path, dir_okay=False), help="vendor's public key VENDOR.pub (key-signed bundles)"),
        click.option("--trusted-root", type=click.Path(path_type=Path, dir_okay=False), help="Sigstore trusted_root.json (keyless bundles)"),
        click.option("--identity", help="keyless: expected signer identity (e-mail or URI in the certificate)"),
        click.option("--issuer", help="keyless: expected OIDC issuer URL"),
    ]
    return with_options(function, options)


def with_options(function: Callable[..., Any], options: list[Callable[..., Any]]) -> Callable[..., Any]:
    """Apply click options in the order listed (the first is shown first in --help)."""
    for option in reversed(options):
        function = option(function)
    return function


def evaluation_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """``--streaming/--no-streaming`` and ``--device``, shared by every command that measures perplexity."""
    options = [
        click.option("--streaming/--no-streaming", default=True, show_default=True,
                     help="evaluate block by block (one decoder block's weights in memory; the same NLL per window, bit for bit) "
                          "or load the whole model"),  # fmt: skip
        click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]",
                     help="where to compute (auto: the first CUDA device when there is one, else the CPU)"),
    ]
    return with_options(function, options)


def evaluation_settings(*, streaming: bool, device: str, quiet: bool, seq_len: int = 512, max_windows: int | None = None,
                        compute_dtype: str = "float32") -> EvalSettings:  # fmt: skip
    """The one :class:`EvalSettings` a command measures with, built from its options (``--device`` resolved here, once)."""
    from ..evaluate.measure import resolve_device
    from ..evaluate.settings import EvalSettings

    return EvalSettings(seq_len=seq_len, max_windows=max_windows, compute_dtype=cast("ComputeDtype", compute_dtype), streaming=streaming,
                        device=resolve_device(device), progress=not quiet)  # fmt: skip


def say_expected_memory(config_path: Path, what: str, peak_of: Callable[[ModelShape], float]) -> None:
    """The first line of a long command, on stderr: its expected peak memory for this model (nothing when not estimable).

    The config read here is not yet verified: it only sizes a forecast, nothing is decided by it.
    """
    shape = load_shape(config_path)
    if shape is not None:
        click.echo(describe(peak_of(shape), shape, what), err=True)
