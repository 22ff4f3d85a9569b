"""``eclsr results collect|render``: keep finished runs small in a results folder; render markdown."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from rich.console import Console

from eclsr.engine import rundir
from eclsr.errors import EclsrError
from eclsr.results.report import PAPER_METRICS


def add_results_command(sub: argparse._SubParsersAction) -> None:
    """Add ``results`` (with ``collect`` and ``render``) to the ``eclsr`` parser."""
    results = sub.add_parser(
        "results", help="collect finished runs into a results folder; render it as markdown"
    )
    actions = results.add_subparsers(dest="results_command", required=True)

    collect = actions.add_parser(
        "collect", help="copy results.json, ranks.npz, metrics.jsonl, recipe.yaml of runs"
    )
    collect.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    collect.add_argument(
        "--into", type=Path, required=True, metavar="DIR", help="the results folder"
    )
    collect.add_argument(
        "--as",
        dest="as_model",
        default=None,
        metavar="MODEL",
        help="file the runs as this model (default: the recipe name without its dataset), e.g. "
        "a grid run as a headline row; its seeds must still share one recipe",
    )
    collect.set_defaults(handler=cmd_collect)

    render = actions.add_parser("render", help="markdown tables with paper values and p-values")
    render.add_argument("books", type=Path, nargs="+", metavar="DIR",
                        help="a folder filled by `collect`; several: models named FOLDER/MODEL")  # fmt: skip
    render.add_argument("--paper", type=Path, default=None, metavar="FILE.toml",
                        help="published values: [dataset.model] metric = value")  # fmt: skip
    render.add_argument("--baseline", default="sasrec-code",
                        help="model every other one is tested against (default sasrec-code)")  # fmt: skip
    render.add_argument("--models", default="", help="comma-separated model order")
    render.add_argument("--pair", action="append", default=[], metavar="A:B",
                        help="also test model B against model A (repeatable)")  # fmt: skip
    render.add_argument("--metric", action="append", default=[],
                        help=f"test metric (repeatable; default {', '.join(PAPER_METRICS)})")  # fmt: skip
    render.add_argument(
        "--by-length",
        nargs="?",
        const="auto",
        default=None,
        metavar="STARTS",
        help="also test each --pair (else each model vs --baseline) per history-length group: "
        "quintiles, or the groups' first lengths (5,8,12); reads the recipes' datasets",
    )
    render.add_argument("--out", type=Path, default=None, help="write here instead of stdout")
    render.set_defaults(handler=cmd_render)


def cmd_collect(args: argparse.Namespace, out: Console) -> int:
    """``eclsr results collect RUN_DIR ... --into DIR``."""
    from eclsr.results.headline import collect

    for folder in collect(args.run_dirs, args.into, args.as_model):
        out.print(f"collected {folder}", highlight=False)
    return 0


def cmd_render(args: argparse.Namespace, out: Console) -> int:
    """``eclsr results render DIR [--paper FILE] [--out FILE]``."""
    from eclsr.results.by_length import LengthSplit, parse_edges
    from eclsr.results.headline import render

    if args.out is not None and args.out.exists():
        _check_generated(args.out)
    text = render(
        args.books,
        args.paper,
        baseline=args.baseline,
        metrics=args.metric or PAPER_METRICS,
        command=_command_line(args),
        order=[name for name in args.models.split(",") if name],
        pairs=[_pair(pair) for pair in args.pair],
        by_length=None if args.by_length is None else LengthSplit(parse_edges(args.by_length)),
    )
    if args.out is None:
        print(text, end="")
        return 0
    rundir.atomic_write_bytes(args.out, text.encode("utf-8"))
    out.print(f"wrote {args.out}", highlight=False)
    return 0


def _pair(text: str) -> tuple[str, str]:
    first, sep, second = text.partition(":")
    if not sep or not first or not second:
        msg = f"--pair {text!r} must be two model names joined by a colon, e.g. icl-sr-code:ecl-sr-code."
        raise EclsrError(msg)
    return first, second


def _check_generated(path: Path) -> None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"--out {str(path)!r} exists and cannot be read ({exc}); choose another file."
        raise EclsrError(msg) from None
    from eclsr.results.headline import GENERATED_MARK

    if GENERATED_MARK not in text:
        msg = (
            f"--out {str(path)!r} exists and was not written by `eclsr results render`; "
            "it is left untouched. Choose another file or remove it first."
        )
        raise EclsrError(msg)


def _command_line(args: argparse.Namespace) -> str:
    """The render command as a user would retype it (relative paths as given)."""
    parts = ["eclsr", "results", "render", *map(str, args.books)]
    if args.paper is not None:
        parts += ["--paper", str(args.paper)]
    if args.baseline != "sasrec-code":
        parts += ["--baseline", args.baseline]
    if args.models:
        parts += ["--models", args.models]
    for metric in args.metric:
        parts += ["--metric", metric]
    for pair in args.pair:
        parts += ["--pair", pair]
    if args.out is not None:
        parts += ["--out", str(args.out)]
    return shlex.join(parts)
