"""The ``eclsr`` command line. The only place that prints errors and chooses exit codes."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import warnings
from collections.abc import Callable, Sequence

from rich.console import Console

from eclsr.cli.bench import add_bench_command
from eclsr.cli.data import add_data_commands
from eclsr.cli.recipes import add_recipe_commands
from eclsr.cli.results import add_results_command
from eclsr.cli.runs import add_commands
from eclsr.cli.tune import add_tune_command
from eclsr.errors import EclsrError, RecipeError, RecipeMigrationWarning, RunInterrupted

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # SIGINT/SIGTERM: stopped cleanly, resumable


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so bad flags get our one-paragraph error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise EclsrError(
            f"{self.prog}: {message}. Run `{self.prog} --help` for the valid arguments."
        )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = _Parser(
        prog="eclsr", description="Contrastive sequential recommendation from recipes."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    add_recipe_commands(sub)
    add_data_commands(sub)
    add_bench_command(sub)
    add_commands(sub)
    add_results_command(sub)
    add_tune_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script and ``python -m eclsr``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or bool(os.environ.get("ECLSR_DEBUG"))
    out = Console()
    err = Console(stderr=True, soft_wrap=True)
    warnings.showwarning = _warning_printer(err)
    try:
        args = build_parser().parse_args(argv)
        # What the runs record as their command: this call's arguments (main(argv) from Python
        # is not sys.argv).
        args.command_line = shlex.join(["eclsr", *argv])
        handler: Callable[[argparse.Namespace, Console], int] = args.handler
        return handler(args, out)
    except EclsrError as exc:
        if debug:
            raise
        _print_error(err, exc)
        return EXIT_INTERRUPTED if isinstance(exc, RunInterrupted) else EXIT_USAGE
    except KeyboardInterrupt:
        err.print("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `eclsr plugins --json | head`: the reader left; not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush stays quiet
        return 0
    except OSError as exc:  # a file or folder the library did not anticipate: still located
        if debug:
            raise
        _print_error(err, EclsrError(_os_error_text(exc)))
        return EXIT_USAGE
    except MemoryError:
        if debug:
            raise
        text = "out of memory. Lower the sizes in the recipe (encoder.hidden, train.batch_size, eval.batch_size) or use a larger machine."
        _print_error(err, EclsrError(text))
        return EXIT_USAGE


def console_main() -> int:
    """The ``eclsr`` console script and ``python -m eclsr``: :func:`main`, then a quiet exit.

    Once the command has returned, its work is done and its exit code chosen; what remains is the
    interpreter's shutdown (torch takes a few tenths of a second to tear down), during which Python
    has already restored SIGINT's default action. A Ctrl-C landing there would kill the process
    with no message and report a failure for a command that succeeded, so the shutdown ignores it.
    Only the command does this: :func:`main` called in-process leaves the host's signals alone.
    """
    try:
        code = main()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except KeyboardInterrupt:  # landed between main's own handling and the line above
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
    return code


def _os_error_text(exc: OSError) -> str:
    """One located sentence for an OSError: the path, the reason, what to do."""
    where = " -> ".join(repr(str(f)) for f in (exc.filename, exc.filename2) if f is not None)
    reason = exc.strerror or str(exc) or type(exc).__name__
    return (
        f"{where or 'a file operation'}: {reason}. Check that the path exists, that you may read "
        "or write it, and that its disk has space."
    )


def _warning_printer(err: Console) -> Callable[..., None]:
    """Show eclsr's warnings (a migrated recipe) as one line each, others as Python would."""
    default = warnings.showwarning

    def show(
        message: Warning | str, category: type[Warning], *args: object, **kwargs: object
    ) -> None:
        if issubclass(category, RecipeMigrationWarning):
            err.print(f"[yellow]note:[/] {message}", highlight=False)
        else:
            default(message, category, *args, **kwargs)  # type: ignore[arg-type]

    return show


def _print_error(err: Console, exc: EclsrError) -> None:
    if isinstance(exc, RecipeError) and exc.problems:
        err.print(f"[bold red]error:[/] {str(exc).splitlines()[0]}", highlight=False)
        for problem in exc.problems:
            err.print(f"  - {problem}", highlight=False, markup=False)
    else:
        err.print("[bold red]error:[/] ", end="", highlight=False)
        err.print(str(exc), highlight=False, markup=False)
