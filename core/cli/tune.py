"""``eclsr tune RECIPE --space SPACE.toml --trials N`` and ``eclsr tune report STUDY``.

The search itself lives in :mod:`eclsr.tune`; this module reads the arguments, prints one line
per finished trial and the summaries, and picks no exit code of its own (errors raise).
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from eclsr.cli.options import add_overrides, load_plugin_files
from eclsr.errors import EclsrError

USAGE = (
    "eclsr tune RECIPE --space SPACE.toml --trials N [--timeout S] [--workers W] [--storage URL]\n"
    "                  [--study NAME] [--pruner median|hyperband|none] [--out DIR]\n"
    "                  [--paired BASELINE [--seeds N] [--rerun-set KEY=VALUE ...]]\n"
    "       eclsr tune report STUDY [--storage URL | --out DIR] [--top K]"
)


def add_tune_command(sub: argparse._SubParsersAction) -> None:
    """Register ``tune`` (and its ``report`` form) on the ``eclsr`` parser."""
    tune = sub.add_parser(
        "tune",
        usage=USAGE,
        help="tune a recipe's values on Optuna (resumable, many workers); `tune report STUDY`",
        description="Search recipe values with Optuna's seeded TPE sampler and prune on the "
        "per-epoch validation metric (the recipe's train.monitor). Every trial is a run "
        "directory under --out/trials. Needs the tune extra: pip install 'eclsr[tune]'.",
    )
    tune.add_argument("target", metavar="RECIPE", help="the recipe to tune, or the word `report`")
    tune.add_argument("study_arg", nargs="?", metavar="STUDY", help="with `report`: the study")
    tune.add_argument("--space", type=Path, metavar="SPACE.toml", help="the search space")
    tune.add_argument("--trials", type=int, metavar="N", help="trials in the study, all workers")
    tune.add_argument("--timeout", type=float, metavar="S", help="start no trial after S seconds")
    tune.add_argument("--workers", type=int, default=1, metavar="W",
                      help="processes on this machine sharing the study (threads split)")  # fmt: skip
    tune.add_argument("--storage", metavar="URL",
                      help="SQLAlchemy URL (default sqlite:///<out>/study.db)")  # fmt: skip
    tune.add_argument("--study", metavar="NAME", help="study name (default: the recipe name)")
    tune.add_argument("--pruner", choices=["median", "hyperband", "none"], default="median",
                      help="prune on the per-epoch validation metric (default median)")  # fmt: skip
    tune.add_argument("--pruner-startup", type=int, default=5, metavar="T",
                      help="median pruner: trials that finish before it prunes (default 5)")  # fmt: skip
    tune.add_argument("--pruner-warmup", type=int, default=1, metavar="E",
                      help="median pruner: epochs never pruned in each trial (default 1)")  # fmt: skip
    tune.add_argument("--seed", type=int, default=None, help="sampler seed (default: the recipe's)")
    tune.add_argument("--heartbeat", type=int, default=30, metavar="S",
                      help="trial heartbeat; a trial silent for 2×S is lost (default 30)")  # fmt: skip
    tune.add_argument("--out", type=Path, default=None, metavar="DIR",
                      help="trials and the default storage (default tunes/<study>)")  # fmt: skip
    tune.add_argument("--paired", type=Path, default=None, metavar="BASELINE",
                      help="tune this baseline recipe with the same budget and space, then rerun "
                      "both winners with --seeds seeds and test them")  # fmt: skip
    tune.add_argument("--seeds", type=int, default=3, help="--paired: seeds per winner (default 3)")
    tune.add_argument("--rerun-set", dest="rerun_overrides", action="append", default=[],
                      metavar="KEY=VALUE",
                      help="--paired: override a value of both winners for their reruns only, e.g. "
                      "tune on a cheap proxy and rerun the real thing (repeatable; the reruns go "
                      "to --out/paired-KEY=VALUE)")  # fmt: skip
    tune.add_argument(
        "--top", type=int, default=10, help="report: trials in the table (default 10)"
    )
    add_overrides(tune)
    tune.set_defaults(handler=cmd_tune)


def cmd_tune(args: argparse.Namespace, out: Console) -> int:
    """``eclsr tune RECIPE ...`` or ``eclsr tune report STUDY``."""
    if args.target == "report":
        return cmd_report(args, out)
    if args.study_arg is not None:
        msg = f"eclsr tune: unexpected argument {args.study_arg!r}; only `eclsr tune report STUDY` takes a second one."
        raise EclsrError(msg)
    from eclsr.tune.study import require_optuna, tune

    require_optuna()  # before anything else: say which extra is missing
    for flag, value in (("--space", args.space), ("--trials", args.trials)):
        if value is None:
            raise EclsrError(f"eclsr tune RECIPE needs {flag}. Usage:\n{USAGE}")
    if args.rerun_overrides and args.paired is None:
        raise EclsrError("--rerun-set changes the reruns of --paired; pass --paired BASELINE too.")
    load_plugin_files(args)
    settings = _settings(args, args.target, args.study)
    baseline = _baseline(args, out, settings) if args.paired is not None else None
    out.print(
        f"tuning {args.target} ({len(settings.space.params)} values, {settings.trials} trials, "
        f"{settings.workers} worker(s) × {settings.threads or 'default'} threads) → {settings.out}; "
        f"storage {settings.storage_url}",
        highlight=False,
        soft_wrap=True,
    )
    study = tune(settings, on_trial=print_trial)
    _print_summary(out, study, settings)
    if baseline is not None:
        _paired(args, out, settings, baseline)
    return 0


def _settings(args: argparse.Namespace, recipe_file: Path | str, study: str | None) -> Any:
    """Read, validate and check the recipe and the space; the settings of one study."""
    from eclsr.recipe.load import recipe_data, validate_recipe
    from eclsr.tune.space import check_space, read_space
    from eclsr.tune.study import TuneSettings

    file = Path(recipe_file)
    data = recipe_data(file, args.overrides)
    recipe = _buildable(file, data)
    space = read_space(args.space)
    check_space(
        space, data, recipe, partial(validate_recipe, source=str(file), base_dir=file.parent)
    )
    threads = _threads(args.workers, recipe.train.threads)
    name = study or recipe.name or file.stem
    return TuneSettings(
        recipe_data=data,
        space=space,
        trials=args.trials,
        out=args.out or Path("tunes") / name,
        study_name=name,
        storage=args.storage,
        timeout=args.timeout,
        workers=args.workers,
        pruner=args.pruner,
        seed=recipe.seed if args.seed is None else args.seed,
        heartbeat=args.heartbeat,
        pruner_startup=args.pruner_startup,
        pruner_warmup=args.pruner_warmup,
        threads=threads,
        base_dir=file.parent,
        plugin_files=tuple(args.plugin_files),
        command=args.command_line,
    )


def _threads(workers: int, recipe_threads: int | None) -> int | None:
    """Torch threads per worker: the recipe's with one worker, so a trial and `eclsr run` of
    its recipe compute alike; a share of the cores with several (W × threads ≤ cores)."""
    from eclsr.tune.study import threads_per_worker

    share = threads_per_worker(workers)  # also refuses more workers than cores
    if workers == 1:
        return recipe_threads
    return share if recipe_threads is None else min(share, recipe_threads)


def print_trial(trial: Any) -> None:
    """One line per finished trial (runs in each worker process)."""
    from eclsr.tune.study import ERROR, PRUNED_AT

    state = trial.state.name
    params = ", ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
    if state == "COMPLETE":
        what = f"value {trial.value:.4f}"
    elif state == "PRUNED":
        what = f"pruned after epoch {trial.user_attrs.get(PRUNED_AT, '?')}"
    elif ERROR in trial.user_attrs:
        what = f"failed: {trial.user_attrs[ERROR]}"
    else:
        what = "lost (interrupted); a resumed study replaces it"
    Console(soft_wrap=True).print(
        f"trial {trial.number:>4} {what}  [{params}]", highlight=False, markup=False
    )


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _print_summary(out: Console, study: Any, settings: Any) -> None:
    from collections import Counter

    from eclsr.tune.study import counts

    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state.name if counts(t) else "LOST" for t in trials)
    text = ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items()))
    out.print(f"study {settings.study_name!r}: {len(trials)} trials ({text})", highlight=False)
    if states.get("RUNNING"):
        out.print(
            f"[yellow]note:[/] {states['RUNNING']} trial(s) still RUNNING: another worker's, or a killed "
            f"one that is declared lost {2 * settings.heartbeat}s after its last heartbeat; rerun to replace it.",
            highlight=False,
        )
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    if complete:
        best = max(complete, key=lambda t: t.value)
        out.print(
            f"best: trial {best.number}, valid {study.user_attrs.get('metric')} {best.value:.4f}, {best.params}",
            highlight=False,
            soft_wrap=True,
        )
    from eclsr.tune.study import sqlite_url

    command = f"eclsr tune report {settings.study_name} --out {settings.out}"
    if settings.storage_url != sqlite_url(settings.out / "study.db"):  # not the default there
        command += f" --storage {settings.storage_url}"
    out.print(f"report: {command}", highlight=False, soft_wrap=True)


def cmd_report(args: argparse.Namespace, out: Console) -> int:
    """``eclsr tune report STUDY``: best recipe TOML, top-trials table, PNG plots."""
    from eclsr.engine import rundir
    from eclsr.tune.report import (
        best_recipe_toml,
        have_matplotlib,
        load_study,
        trial_rows,
        write_plots,
    )
    from eclsr.tune.study import counts, sqlite_url

    if args.study_arg is None:
        raise EclsrError(f"eclsr tune report needs the STUDY name. Usage:\n{USAGE}")
    folder = args.out or Path("tunes") / args.study_arg
    url = args.storage or sqlite_url(folder / "study.db")
    if args.storage is None and not (folder / "study.db").is_file():
        msg = f"no study storage at {folder / 'study.db'}; pass --out DIR (the folder given to `eclsr tune --out`) or --storage URL."
        raise EclsrError(msg)
    study = load_study(args.study_arg, url)
    metric = study.user_attrs.get("metric", "value")
    table = Table(title=f"study {study.study_name!r}: top trials by valid {metric}")
    for column in ("trial", "state", metric, "epochs", "values", "run directory / note"):
        table.add_column(
            column, justify="right" if column in ("trial", metric, "epochs") else "left"
        )
    for row in trial_rows(study, args.top):
        params = ", ".join(f"{k}={_short(v)}" for k, v in row.params.items())
        value = "–" if row.value is None else f"{row.value:.4f}"
        table.add_row(
            str(row.number),
            row.state.lower(),
            value,
            str(row.epochs or "–"),
            params,
            row.note or row.run_dir,
        )
    target = out if out.is_terminal else Console(file=out.file, width=250, no_color=out.no_color)
    target.print(table)
    lost = sum(not counts(t) for t in study.get_trials(deepcopy=False))
    if lost:
        out.print(f"{lost} lost trial(s) (killed or interrupted, replaced on resume) not shown.")
    report = folder / "report"
    try:
        best = best_recipe_toml(study)
    except EclsrError as exc:
        out.print(f"[yellow]no best recipe:[/] {exc}", highlight=False)
    else:
        rundir.atomic_write_bytes(report / "best.toml", best.encode("utf-8"))
        out.print(
            f"wrote {report / 'best.toml'} (run it with: eclsr run {report / 'best.toml'})",
            highlight=False,
        )
    if not have_matplotlib():
        out.print(
            "no plots: matplotlib is not installed (pip install 'eclsr[tune]').", highlight=False
        )
        return 0
    written, notes = write_plots(study, report)
    for path in written:
        out.print(f"wrote {path}", highlight=False)
    for note in notes:
        out.print(f"[yellow]note:[/] {note}", highlight=False)
    return 0


def _baseline(args: argparse.Namespace, out: Console, settings: Any) -> Any:
    """The baseline's study settings, checked before the first study starts."""
    from eclsr.recipe.load import recipe_data, validate_recipe
    from eclsr.tune.paired import baseline_settings
    from eclsr.tune.space import check_space

    if args.seeds < 2:
        raise EclsrError(f"--seeds must be at least 2 for the across-seed test, got {args.seeds}.")
    file = args.paired
    data = recipe_data(file, args.overrides)  # --set applies to both recipes: the same budget
    recipe = _buildable(file, data)
    baseline, dropped = baseline_settings(settings, data, recipe, file.parent)
    for rerun_file, rerun_data in ((Path(args.target), settings.recipe_data), (file, data)):
        _check_rerun_overrides(rerun_file, rerun_data, args.rerun_overrides)
    check_space(
        baseline.space,
        data,
        recipe,
        partial(validate_recipe, source=str(file), base_dir=file.parent),
    )
    if dropped:
        out.print(
            f"--paired: the baseline has no {', '.join(dropped)}; it is tuned over the other {len(baseline.space.params)} value(s).",
            highlight=False,
            soft_wrap=True,
        )
    return baseline


def _check_rerun_overrides(file: Path, data: dict[str, Any], overrides: list[str]) -> None:
    """``--rerun-set`` values are checked before hours of tuning, on the recipe they change."""
    from eclsr.recipe.load import apply_overrides

    if overrides:
        _buildable(file, apply_overrides(data, overrides), source=f"{file} with --rerun-set")


def _buildable(file: Path, data: dict[str, Any], source: str | None = None) -> Any:
    """The recipe ``data`` read from ``file``, validated and checked to build a model."""
    from eclsr.engine.model import check_build
    from eclsr.recipe.load import validate_recipe

    recipe = validate_recipe(data, source=source or str(file), base_dir=file.parent)
    check_build(recipe)
    return recipe


def _paired(args: argparse.Namespace, out: Console, settings: Any, baseline: Any) -> None:
    """Tune the baseline, rerun both winners with the same seeds, print the tests."""
    from eclsr.tune.paired import (
        METRICS,
        by_seed,
        compare,
        plan_reruns,
        reruns_folder,
        run_reruns,
        valid_means,
    )
    from eclsr.tune.report import best_trial
    from eclsr.tune.study import tune

    out.print(
        f"tuning the baseline {args.paired} with the same budget → {baseline.out}",
        highlight=False,
        soft_wrap=True,  # a path cut in two cannot be pasted
    )
    base_study = tune(baseline, on_trial=print_trial)
    _print_summary(out, base_study, baseline)
    from eclsr.tune.report import load_study

    study = load_study(settings.study_name, settings.storage_url)
    seeds = [settings.seed + i for i in range(args.seeds)]
    changes = args.rerun_overrides
    with_changes = f" with {' '.join(changes)}" if changes else ""
    out.print(
        f"rerunning both winners{with_changes} with seeds {seeds} ({settings.workers} at a time)",
        highlight=False,
        soft_wrap=True,
    )
    paired_dir = reruns_folder(settings.out, changes)
    command = settings.command
    tuned = plan_reruns(
        study, paired_dir / "tuned", seeds, settings.threads, settings.base_dir, changes, command
    )
    base = plan_reruns(
        base_study,
        paired_dir / "baseline",
        seeds,
        baseline.threads,
        baseline.base_dir,
        changes,
        command,
    )
    run_reruns(by_seed(tuned, base), settings.workers, settings.plugin_files)
    outcome = compare([r.folder for r in tuned], [r.folder for r in base], seeds, METRICS)
    table = Table(
        title=f"test split: B = tuned {args.target} vs A = tuned {args.paired}{with_changes} ({len(seeds)} seeds)"
    )
    for column in (
        "metric",
        "A mean ± sd",
        "B mean ± sd",
        "B − A",
        "p per user (t)",
        "p per user (W)",
        "p across seeds (t)",
    ):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for user, seed in zip(outcome.per_user, outcome.across_seeds, strict=True):
        a, b = outcome.seed_means["baseline"][user.metric], outcome.seed_means["tuned"][user.metric]
        table.add_row(
            user.metric,
            _mean_sd(a),
            _mean_sd(b),
            f"{user.diff:+.4f}",
            f"{user.p_t:.2e}",
            f"{user.p_w:.2e}",
            f"{seed.p_t:.2e}",
        )
    target = out if out.is_terminal else Console(file=out.file, width=250, no_color=out.no_color)
    target.print(table)
    metric = study.user_attrs.get("metric", "recall@10")
    for label, chosen, reruns in (("B", study, tuned), ("A", base_study, base)):
        valid = valid_means([r.folder for r in reruns], metric)
        out.print(
            f"{label}: valid {metric} {best_trial(chosen).value:.4f} in its trial, "
            f"{_mean_sd(valid)} in the reruns{with_changes}",
            highlight=False,
            soft_wrap=True,
        )
    out.print(
        f"per user: {outcome.per_user[0].n} users, each one's metric averaged over the seeds (paired t-test, Wilcoxon); "
        f"across seeds: the {len(seeds)} seed means paired by seed (t-test). Runs: {paired_dir}",
        highlight=False,
        soft_wrap=True,
    )


def _mean_sd(values: list[float]) -> str:
    import statistics

    return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"
