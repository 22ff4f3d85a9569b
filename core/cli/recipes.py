"""Recipe commands: ``validate``, ``plugins``, ``schema``, ``run``, ``resume``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from eclsr.cli.options import add_overrides, add_plugin_option, load_plugin_files
from eclsr.errors import EclsrError


def add_recipe_commands(sub: argparse._SubParsersAction) -> None:
    """Register the recipe commands on the top-level subparsers."""
    validate = sub.add_parser("validate", help="validate a recipe (exit 0 valid, 2 invalid)")
    validate.add_argument("recipe", type=Path)
    add_overrides(validate)
    validate.set_defaults(handler=cmd_validate)

    plugins = sub.add_parser("plugins", help="list every registered component")
    plugins.add_argument("--json", action="store_true", help="print a JSON list")
    add_plugin_option(plugins)
    plugins.set_defaults(handler=cmd_plugins)

    schema = sub.add_parser("schema", help="print the recipe's JSON schema")
    add_plugin_option(schema)
    schema.set_defaults(handler=cmd_schema)

    run = sub.add_parser("run", help="train and evaluate a recipe")
    run.add_argument("recipe", type=Path)
    add_overrides(run)
    run.add_argument(
        "--out", type=Path, default=None, help="run directory (default runs/<name>/<time>)"
    )
    run.add_argument("--overwrite", action="store_true", help="allow a non-empty --out")
    run.add_argument("--no-progress", action="store_true", help="no live progress bar")
    run.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    run.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="N",
        help="train on N processes via torchrun (nccl with one GPU each; gloo on the CPU)",
    )
    run.set_defaults(handler=cmd_run)

    resume = sub.add_parser(
        "resume",
        help="continue an interrupted run from its last checkpoint; or extend a stopped one "
        "(--set train.patience=N --out NEW_DIR)",
    )
    resume.add_argument("run_dir", type=Path)
    resume.add_argument("--no-progress", action="store_true", help="no live progress bar")
    resume.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="raise train.patience or train.epochs: the run trains on as if started with them "
        "(needs --out)",
    )
    resume.add_argument(
        "--out",
        type=Path,
        default=None,
        help="continue in this new directory; RUN_DIR is copied and left untouched",
    )
    add_plugin_option(resume)
    resume.set_defaults(handler=cmd_resume)


def _recipe(args: argparse.Namespace):  # noqa: ANN202
    from eclsr.recipe.load import load_recipe

    load_plugin_files(args)
    return load_recipe(args.recipe, args.overrides)


def cmd_validate(args: argparse.Namespace, out: Console) -> int:
    """``eclsr validate RECIPE``."""
    from eclsr.engine.model import check_build

    recipe = _recipe(args)
    check_build(recipe)  # build-time checks too, located, before any data is read
    heads = len(recipe.heads)
    out.print(
        f"{args.recipe}: valid ({heads} head{'s' if heads != 1 else ''}, encoder {recipe.encoder.name!r})",
        soft_wrap=True,
    )
    return 0


def cmd_plugins(args: argparse.Namespace, out: Console) -> int:
    """``eclsr plugins [--json]``."""
    from eclsr.registry.listing import plugin_rows

    load_plugin_files(args)
    rows = plugin_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title="eclsr components")
    for column in ("kind", "name", "plugin", "entry point", "distribution"):
        table.add_column(column)
    for row in rows:
        kind = f"{row['kind']} ({row['intensity']})" if row["intensity"] else row["kind"]
        dist = f"{row['distribution']} {row['version']}" if row["distribution"] else "-"
        table.add_row(kind, row["name"], row["plugin"], row["entry_point"] or "-", dist)
    out.print(table)
    return 0


def cmd_schema(args: argparse.Namespace, out: Console) -> int:
    """``eclsr schema``: the JSON schema of a recipe with every installed plugin."""
    from eclsr.recipe.schema import recipe_model
    from eclsr.registry.manager import collect_registries

    load_plugin_files(args)
    print(json.dumps(recipe_model(collect_registries()).model_json_schema(), indent=2))
    return 0


def cmd_run(args: argparse.Namespace, out: Console) -> int:
    """``eclsr run RECIPE``: train, evaluate, write the run directory, print the test metrics."""
    from eclsr.engine.distributed import leave_distributed, maybe_init_distributed
    from eclsr.engine.rundir import default_run_dir
    from eclsr.engine.train import run

    if args.nproc < 1:
        msg = f"--nproc must be a positive number of processes, got {args.nproc}; use --nproc 1 for one process."
        raise EclsrError(msg)
    recipe = _recipe(args)  # validated before any process is started
    if args.nproc > 1 and "RANK" not in os.environ:
        return _launch_torchrun(args.nproc)
    if args.resume and args.out is None:
        raise EclsrError("--resume needs --out RUN_DIR: the run directory to continue.")
    rank = maybe_init_distributed(recipe.train.device)
    out_dir = args.out or default_run_dir(recipe.name or "recipe")
    result = run(
        recipe,
        out_dir,
        overwrite=args.overwrite,
        resume=args.resume,
        progress=not args.no_progress and sys.stderr.isatty(),
        command=args.command_line,
    )
    if rank == 0:
        print_results(out, result.results, out_dir)
    leave_distributed()
    return 0


def cmd_resume(args: argparse.Namespace, out: Console) -> int:
    """``eclsr resume RUN_DIR``: continue with the run's own resolved recipe."""
    from eclsr.engine.distributed import leave_distributed, maybe_init_distributed
    from eclsr.engine.train import run
    from eclsr.results.inference import load_run_recipe

    recipe_file = args.run_dir / "recipe.yaml"
    if not recipe_file.is_file():
        raise EclsrError(f"{args.run_dir} is not an eclsr run directory (no recipe.yaml).")
    # Its plugin files are imported only when passed with --plugin (a run directory can come
    # from anyone; importing a file runs its code).
    # Says which package a component came from when it is missing now (from plugins.json).
    recipe = load_run_recipe(args.run_dir, args.plugin_files)
    run_dir = args.run_dir
    if args.overrides or args.out is not None:
        recipe, run_dir = _extend(args, recipe)
    rank = maybe_init_distributed(recipe.train.device)
    progress = not args.no_progress and sys.stderr.isatty()
    result = run(recipe, run_dir, resume=True, progress=progress, command=args.command_line)
    if rank == 0:
        print_results(out, result.results, run_dir)
    leave_distributed()
    return 0


def _extend(args: argparse.Namespace, recipe):  # noqa: ANN202
    """Copy the run to ``--out`` (with raised stopping values) and return what to resume there."""
    from eclsr.engine.extend import extend_run

    if args.out is None:
        msg = (
            f"eclsr resume --set writes the extended run to a new directory, so that "
            f"{str(args.run_dir)!r} keeps its results: add --out NEW_DIR."
        )
        raise EclsrError(msg)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        msg = "eclsr resume --out/--set copies the run once: run it as one process, then continue the copy under torchrun with `eclsr resume NEW_DIR`."
        raise EclsrError(msg)
    return extend_run(args.run_dir, args.out, recipe, args.overrides), args.out


def _launch_torchrun(nproc: int) -> int:
    """Re-run this command under PyTorch's own launcher (torchrun) on ``nproc`` processes."""
    from torch.distributed.run import main as torchrun

    argv = _strip_option(sys.argv[1:], "--nproc")
    try:
        torchrun(["--standalone", "--nproc-per-node", str(nproc), "-m", "eclsr", *argv])
    except Exception as exc:  # torchrun has already printed the failing rank's error
        raise EclsrError(f"distributed run failed: {exc}") from None
    return 0


def _strip_option(argv: list[str], option: str) -> list[str]:
    """``argv`` without ``option VALUE`` / ``option=VALUE``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out


def print_results(out: Console, results: dict, out_dir: Path | None) -> None:
    """A table of the test (and validation) metrics."""
    table = Table(title=f"{results.get('recipe')}: best epoch {results['best_epoch']}")
    table.add_column("metric")
    table.add_column("valid", justify="right")
    table.add_column("test", justify="right")
    table.add_column("popularity (test)", justify="right")
    popularity = results.get("popularity_test", {})
    for key, value in results["test"].items():
        table.add_row(
            key,
            f"{results['valid'].get(key, float('nan')):.4f}",
            f"{value:.4f}",
            f"{popularity.get(key, float('nan')):.4f}",
        )
    out.print(table)
    if out_dir is not None:
        out.print(f"run directory: {out_dir}")
