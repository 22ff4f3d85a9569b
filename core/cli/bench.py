"""``eclsr bench``: the command line of :mod:`eclsr.engine.bench` (a benchmark, not a test)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from eclsr.errors import EclsrError

EXAMPLE = "eclsr bench --dataset yelp --preset code --max-batches 20 --json bench.json"


def add_bench_command(sub: argparse._SubParsersAction) -> None:
    """Add ``bench`` to the ``eclsr`` parser."""
    bench = sub.add_parser(
        "bench",
        help="benchmark training/evaluation speed, peak RSS and MFU",
        description=f"Benchmark recipes on one dataset. Example: {EXAMPLE}",
    )
    bench.add_argument("recipes", nargs="*", metavar="RECIPE", help="recipe files (default: "
                       "recipes/<model>[-code]/<dataset>.toml for each of --models)")  # fmt: skip
    bench.add_argument("--dataset", default=None, help="toys | sports | yelp | ml-1m-synthetic | "
                       "a data file (default: yelp, or the recipes' own data)")  # fmt: skip
    bench.add_argument("--preset", choices=["code", "paper"], default="code")
    bench.add_argument("--models", default="sasrec,ecl-sr", help="comma-separated recipe folders")
    bench.add_argument("--epochs", type=int, default=1, help="full epochs to time (default 1)")
    bench.add_argument("--max-batches", type=int, default=None, metavar="N",
                       help="time N steady-state batches and extrapolate the epoch")  # fmt: skip
    bench.add_argument("--warmup", type=int, default=5, help="untimed warm-up batches (default 5)")
    bench.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="KEY=VALUE", help="override every recipe, e.g. train.amp=bf16")  # fmt: skip
    bench.add_argument("--no-eval", action="store_true", help="skip the evaluation timing")
    bench.add_argument("--in-process", action="store_true",
                       help="run every model in this process (peak RSS then accumulates)")  # fmt: skip
    bench.add_argument("--malloc", choices=["inherit", "tuned", "default", "both"], default="inherit",
                       help="GLIBC_TUNABLES of the worker: inherited, the tuned setting of "
                       "docs/performance.md, unset, or both (each model twice)")  # fmt: skip
    bench.add_argument("--profile", type=int, default=0, metavar="STEPS",
                       help="also profile STEPS steps with torch.profiler (top ops)")  # fmt: skip
    bench.add_argument("--json", type=Path, default=None, metavar="OUT", help="write JSON here")
    bench.add_argument("--compare-epoch-seconds", type=float, default=None, metavar="X",
                       help="print the ratio X / measured seconds per epoch")  # fmt: skip
    bench.add_argument(
        "--recipe-dir", default=None, help="the recipes/ folder to take presets from"
    )
    bench.set_defaults(handler=cmd_bench)


def cmd_bench(args: argparse.Namespace, out: Console) -> int:
    """Run the benchmark, print its table, write its JSON."""
    from eclsr.engine.bench import BenchOptions, run_bench

    if args.max_batches is not None and args.max_batches < 1:
        msg = f"--max-batches must be >= 1, got {args.max_batches}."
        raise EclsrError(msg)
    options = BenchOptions(
        recipes=tuple(str(r) for r in args.recipes),
        dataset=args.dataset,
        preset=args.preset,
        models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
        epochs=args.epochs,
        max_batches=args.max_batches,
        warmup=args.warmup,
        overrides=tuple(args.overrides),
        evaluate=not args.no_eval,
        isolate=not args.in_process,
        malloc=args.malloc,
        profile_steps=args.profile,
        compare_epoch_seconds=args.compare_epoch_seconds,
        recipe_dir=args.recipe_dir,
    )
    report = run_bench(options)
    print_report(out, report)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        out.print(f"wrote {args.json}")
    return 0


def print_report(out: Console, report: dict[str, Any]) -> None:
    """The benchmark table, the epoch-mode notes, reference ratios and any profiles."""
    datasets = ", ".join(sorted({row["dataset"] for row in report["models"]}))
    title = f"eclsr bench: {datasets} (torch {report['torch']}); * = extrapolated s/ep"
    table = Table(title=title, box=box.SIMPLE)
    columns = ("model", "D/L", "pos/s", "s/ep", "s/b", "eval u/s", "RSS MiB", "GF/s", "MFU")
    for column in columns:
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in report["models"]:
        table.add_row(*_cells(row))
    out.print(table)
    for row in report["models"]:
        train = row["train"]
        out.print(
            f"{row['model']}: s/epoch {train['epoch_mode']} ({train['epoch_note']}); "
            f"fp32 matmul {row['matmul_gflops']['peak']:.0f} GFLOP/s; "
            f"GLIBC_TUNABLES={row['glibc_tunables'] or '(unset)'}",
            highlight=False,
        )
        if "speedup_vs_reference" in row:
            out.print(
                f"{row['model']}: reference {row['reference_epoch_seconds']} s / measured "
                f"{train['seconds_per_epoch']} s = {row['speedup_vs_reference']}×",
                highlight=False,
            )
        if "profile" in row:
            _print_profile(out, row)


def _cells(row: dict[str, Any]) -> list[str]:
    train, evaluation = row["train"], row.get("eval", {})
    mark = "" if train["epoch_mode"] == "full" else "*"
    return [
        row["model"],
        f"{row['hidden']}/{row['max_len']}",
        f"{train['positions_per_second']:,.0f}",
        f"{train['seconds_per_epoch']:,.1f}{mark}",
        f"{train['seconds_per_batch']:.3f}",
        f"{evaluation['users_per_second']:,.0f}" if evaluation else "-",
        f"{row['peak_rss_mib']:,.0f}",
        _fmt(train["model_gflops"], "{:.1f}"),
        _fmt(train["mfu"], "{:.1%}"),
    ]


def _fmt(value: float | None, pattern: str) -> str:
    return "n/a" if value is None else pattern.format(value)


def _print_profile(out: Console, row: dict[str, Any]) -> None:
    table = Table(title=f"{row['model']}: top ops by self CPU time")
    for column in ("op", "self CPU s", "share", "calls"):
        table.add_column(column, justify="left" if column == "op" else "right")
    for op in row["profile"]:
        table.add_row(op["op"], f"{op['self_cpu_s']:.3f}", f"{op['share']:.1%}", str(op["calls"]))
    out.print(table)
