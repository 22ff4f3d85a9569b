"""Reports over finished runs: side-by-side tables, learning curves, paired comparisons, markdown.

Everything is read from run directories (``results.json``, ``metrics.jsonl``, ``recipe.yaml``,
``ranks.npz``); nothing is typed by hand. Runs are compared only when their recorded ``protocol``
dicts agree (same data, split, ranking, ties, exclusion, cut-offs).
"""

from __future__ import annotations

import json
import math
import statistics
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from eclsr.engine import rundir
from eclsr.errors import EclsrError
from eclsr.results.inference import read_results, read_run_file
from eclsr.results.stats import PairedTest, paired_tests, per_user_metric

PAPER_METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")


@dataclass
class RunRecord:
    """One finished run as read from its directory."""

    path: Path
    results: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    recipe: dict[str, Any] = field(
        default_factory=dict
    )  # the resolved recipe.yaml ({} if unreadable)

    @property
    def monitor(self) -> str:
        """The recipe's ``train.monitor`` (``""`` when unknown)."""
        return str(self.recipe.get("train", {}).get("monitor", ""))

    @property
    def label(self) -> str:
        """``recipe (seed S)`` or the folder name."""
        return f"{self.results.get('recipe') or self.path.name} (seed {self.results.get('seed')})"


def load_run(path: str | Path) -> RunRecord:
    """Read a finished run directory (results, per-epoch history, resolved recipe)."""
    from eclsr.recipe.load import parse_yaml

    run_dir = Path(path)
    results = read_results(run_dir)
    history = []
    metrics_file = run_dir / rundir.METRICS
    if metrics_file.is_file():
        # A damaged byte must not hide the epochs before it: undecodable text fails json below.
        text = metrics_file.read_bytes().decode("utf-8", errors="replace")
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break  # a line cut short by a crash: the epochs before it stand
            if not isinstance(record, dict):
                break  # not an epoch record: the log is damaged from here on
            history.append(record)
    try:
        recipe = parse_yaml(read_run_file(run_dir, rundir.RECIPE), str(run_dir / rundir.RECIPE))
    except EclsrError:
        recipe = None
    return RunRecord(run_dir, results, history, recipe if isinstance(recipe, dict) else {})


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (lists stay values)."""
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, inner in value.items():
        out |= flatten(inner, f"{prefix}.{key}" if prefix else str(key))
    return out


#: Protocol keys recorded for provenance that do not change what a metric means: how training
#: rows were built is a training choice (the thing a protocol grid varies), while the split,
#: ranking and metrics stay the same, so runs that differ only there remain comparable.
PROTOCOL_TRAINING_KEYS = ("training_examples",)


def protocol_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """``key: A → B`` for every (dotted) evaluation-protocol key whose values differ.

    Keys of :data:`PROTOCOL_TRAINING_KEYS` are not compared (runs recorded before they existed
    lack them too).
    """
    a = {k: v for k, v in a.items() if k not in PROTOCOL_TRAINING_KEYS}
    b = {k: v for k, v in b.items() if k not in PROTOCOL_TRAINING_KEYS}
    flat_a, flat_b = flatten(a), flatten(b)
    keys = sorted(set(flat_a) | set(flat_b))
    missing = "<missing>"
    return [
        f"{key}: {flat_a.get(key, missing)!r} → {flat_b.get(key, missing)!r}"
        for key in keys
        if flat_a.get(key, missing) != flat_b.get(key, missing)
    ]


def check_protocols(runs: Sequence[RunRecord], allow_mismatch: bool = False) -> list[str]:
    """Differences of each run's protocol from the first's; raise unless ``allow_mismatch``."""
    problems = []
    first = runs[0].results.get("protocol", {})
    for run in runs[1:]:
        for diff in protocol_differences(first, run.results.get("protocol", {})):
            problems.append(f"{run.path} vs {runs[0].path}: {diff}")
    if problems and not allow_mismatch:
        shown = "\n".join(f"  - {p}" for p in problems[:20])
        more = f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else ""
        msg = f"the runs were evaluated under different protocols, so their metrics are not comparable:\n{shown}{more}\nPass --allow-protocol-mismatch to show them anyway."
        raise EclsrError(msg)
    return problems


def report_metrics(runs: Sequence[RunRecord], wanted: Sequence[str] = ()) -> list[str]:
    """The test metrics to show: ``wanted``, else the paper's four where present, else all."""
    available = [
        k
        for k in runs[0].results.get("test", {})
        if all(isinstance(r.results["test"].get(k), (int, float)) for r in runs)
    ]
    if wanted:
        unknown = [m for m in wanted if m not in available]
        if unknown:
            msg = f"--metric {', '.join(unknown)}: not recorded by every run. Available: {', '.join(available)}."
            raise EclsrError(msg)
        return list(wanted)
    paper = [m for m in PAPER_METRICS if m in available]
    return paper or available


def runs_table(runs: Sequence[RunRecord], metrics: Sequence[str]) -> Table:
    """A rich table, one row per run; the best value of each metric in bold."""
    table = Table(title="runs (test metrics at the best validation epoch)")
    for column in ("#", "recipe", "seed", "best epoch", "epochs", "seconds"):
        table.add_column(column, justify="left" if column == "recipe" else "right")
    for metric in metrics:
        table.add_column(metric, justify="right")
    best = {m: max(r.results["test"][m] for r in runs) for m in metrics}
    for number, run in enumerate(runs):
        res = run.results
        cells = [
            str(number),
            str(res.get("recipe")),
            str(res.get("seed")),
            str(res.get("best_epoch")),
            str(res.get("epochs_run")),
            _fmt(res.get("seconds"), 1),
        ]
        for metric in metrics:
            value = res["test"][metric]
            cells.append(
                f"[bold]{value:.4f}[/]"
                if value == best[metric] and len(runs) > 1
                else f"{value:.4f}"
            )
        table.add_row(*cells)
    return table


def _fmt(value: Any, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else str(value)


def require_pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend; a clear error when the plot extra is missing."""
    try:
        import matplotlib
    except ImportError:
        msg = "--plots needs matplotlib, which is not installed. Install it with `pip install eclsr[plot]` (or `pip install matplotlib`)."
        raise EclsrError(msg) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_plots(runs: Sequence[RunRecord], out_dir: Path, metrics: Sequence[str]) -> list[Path]:
    """PNG learning curves per run and a bar chart comparing the runs; returns the files."""
    plt = require_pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [
        _curves(plt, run, out_dir / f"curves_{index}_{_slug(run)}.png")
        for index, run in enumerate(runs)
    ]
    written.append(_bars(plt, runs, metrics, out_dir / "comparison.png"))
    return written


def _slug(run: RunRecord) -> str:
    text = f"{run.results.get('recipe') or run.path.name}_seed{run.results.get('seed')}"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def _curves(plt: Any, run: RunRecord, path: Path) -> Path:
    """One panel per loss term (and the total), one for the monitored validation metric."""
    epochs = [h.get("epoch", i) for i, h in enumerate(run.history)]
    terms = ["total"] + sorted({k for h in run.history for k in h.get("losses", {})})
    metric = run.monitor.split(".", 1)[-1] if run.monitor else "ndcg@10"
    panels = len(terms) + 1
    columns = min(3, panels)
    rows = math.ceil(panels / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
    for axis, term in zip(axes.flat, terms + [metric], strict=False):
        if term == metric:
            values = [h.get("valid", {}).get(metric, math.nan) for h in run.history]
            axis.set_title(f"valid {metric}")
        else:
            values = [
                h.get("loss") if term == "total" else h.get("losses", {}).get(term, math.nan)
                for h in run.history
            ]
            axis.set_title(f"loss: {term}")
        axis.plot(epochs, [math.nan if v is None else v for v in values], marker="o", markersize=3)
        axis.set_xlabel("epoch")
        axis.xaxis.get_major_locator().set_params(integer=True)
        if isinstance(run.results.get("best_epoch"), int) and run.results["best_epoch"] >= 0:
            axis.axvline(run.results["best_epoch"], color="grey", linestyle="--", linewidth=0.8)
    for axis in list(axes.flat)[panels:]:
        axis.axis("off")
    figure.suptitle(f"{run.label}: best epoch {run.results.get('best_epoch')} (dashed)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _bars(plt: Any, runs: Sequence[RunRecord], metrics: Sequence[str], path: Path) -> Path:
    figure, axis = plt.subplots(figsize=(max(6, 1.5 * len(metrics) * max(1, len(runs)) / 2), 4))
    width = 0.8 / len(runs)
    positions = np.arange(len(metrics))
    for index, run in enumerate(runs):
        values = [run.results["test"][m] for m in metrics]
        axis.bar(positions + index * width, values, width, label=f"#{index} {run.label}")
    axis.set_xticks(positions + width * (len(runs) - 1) / 2, list(metrics))
    axis.set_ylabel("test")
    axis.set_title("test metrics at the best validation epoch")
    axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def load_ranks(run: RunRecord, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """``(users, ranks)`` of ``split`` from the run's ``ranks.npz``."""
    path = run.path / "ranks.npz"
    try:
        with np.load(path, allow_pickle=False) as saved:
            # validation users are stored apart: a time split may validate other users than it tests
            users = "valid_users" if split == "valid" and "valid_users" in saved.files else "users"
            return saved[users], saved[split]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        msg = f"{str(path)!r} cannot be read ({exc}); it is damaged or truncated. Per-user comparisons need the ranks every run saves: re-run `eclsr evaluate` on it, or restore the file."
        raise EclsrError(msg) from None


def compare_runs(
    run_a: RunRecord,
    run_b: RunRecord,
    metrics: Sequence[str],
    split: str = "test",
    allow_mismatch: bool = False,
) -> list[PairedTest]:
    """Paired tests (B − A) over per-user metrics; the runs' protocols must agree.

    ``allow_mismatch`` pairs runs whose protocols differ (say, one model scored with and
    without seen items) when the users still match.
    """
    _, ranks_a, ranks_b = paired_ranks(run_a, run_b, split, allow_mismatch)
    return [
        paired_tests(per_user_metric(ranks_a, m), per_user_metric(ranks_b, m), m) for m in metrics
    ]


def paired_ranks(
    run_a: RunRecord, run_b: RunRecord, split: str = "test", allow_mismatch: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(users, ranks of A, ranks of B)`` for two runs that scored the same users alike."""
    check_protocols([run_a, run_b], allow_mismatch)
    users_a, ranks_a = load_ranks(run_a, split)
    users_b, ranks_b = load_ranks(run_b, split)
    if not np.array_equal(users_a, users_b):
        msg = f"{run_a.path} and {run_b.path} ranked different users ({len(users_a)} vs {len(users_b)}); they cannot be paired."
        raise EclsrError(msg)
    return users_a, ranks_a, ranks_b


def results_table(
    run_dirs: Sequence[str | Path],
    paper: dict[str, dict[str, float]] | None = None,
    metrics: Sequence[str] = PAPER_METRICS,
) -> str:
    """A markdown table: mean ± std over seeds, one row per recipe name, paper values beside.

    Args:
        run_dirs: finished run directories, folders holding just their ``results.json``, or
            ``results.json`` files (any name).
        paper: recipe name → metric → the paper's value, shown as ``(paper x)``.
        metrics: test metrics to show.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for run_dir in run_dirs:
        path = Path(run_dir)
        results = read_results(path.parent, path.name) if path.is_file() else read_results(path)
        groups.setdefault(str(results.get("recipe")), []).append(results)
    header = ["recipe", "dataset", "seeds", *metrics, "epochs", "s / run", "command"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, group in groups.items():
        reference = (paper or {}).get(name, {})
        cells = [name, str(group[0].get("protocol", {}).get("dataset", "?")), str(len(group))]
        for metric in metrics:
            values = [r["test"][metric] for r in group if metric in r.get("test", {})]
            text = mean_std(values, 4)
            cells.append(
                text + (f" (paper {reference[metric]:.4f})" if metric in reference else "")
            )
        cells.append(mean_std([float(r.get("epochs_run", math.nan)) for r in group], 1))
        cells.append(mean_std([float(r.get("seconds", math.nan)) for r in group], 0))
        cells.append(
            f"`{run_command(group[0])}`"
            + (f" (seeds {', '.join(str(r.get('seed')) for r in group)})" if len(group) > 1 else "")
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def mean_std(values: Sequence[float], digits: int) -> str:
    """``mean ± std`` (sample std) with ``digits`` decimals; one value alone; ``–`` for none."""
    if not values:
        return "–"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def run_command(
    results: dict[str, Any], recipes: Path = Path("recipes"), run_dir: Path | None = None
) -> str:
    """The command that produced a result: its recorded ``command``, else rebuilt.

    The rebuilt command runs the file under ``recipes`` whose recipe name (its ``name`` key, else
    ``stem`` or ``folder-stem``, as ``eclsr run`` names it) equals the result's, with its seed.
    A recipe no file there holds (a tuned trial's, say) is run from the run directory's own
    resolved ``recipe.yaml`` (seed included) rather than from a file that does not exist.
    """
    if results.get("command"):
        return str(results["command"])
    name = str(results.get("recipe") or "recipe")
    file = find_recipe_file(name, recipes)
    if file is None and run_dir is not None and (run_dir / rundir.RECIPE).is_file():
        return f"eclsr run {(run_dir / rundir.RECIPE).as_posix()}"
    shown = file.as_posix() if file is not None else f"{recipes.as_posix()}/{name}.toml"
    return f"eclsr run {shown} --set seed={results.get('seed')}"


def find_recipe_file(name: str, recipes: Path = Path("recipes")) -> Path | None:
    """The recipe file under ``recipes`` that ``eclsr run`` would name ``name``, if any."""
    import tomllib

    for file in sorted(recipes.rglob("*.toml")) if recipes.is_dir() else []:
        derived = (
            file.stem if file.parent.name in ("recipes", "") else f"{file.parent.name}-{file.stem}"
        )
        try:
            declared = tomllib.loads(file.read_text(encoding="utf-8")).get("name")
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            continue
        if (declared or derived) == name:
            return file
    return None
