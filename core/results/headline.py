"""A results book: finished runs kept small under a results folder, rendered as one markdown file.

``collect`` copies what a comparison needs out of run directories (``results.json``, the per-user
``ranks.npz`` and the per-epoch ``metrics.jsonl``; never checkpoints) into
``<book>/<dataset>/<model>/seed-<seed>/``, plus, when a run is too old to record its own machine,
``MACHINE.json`` describing the machine of the collection as a stand-in. ``render`` turns such a
folder into markdown: per dataset, each model's test metrics (mean ± std over seeds) beside the
paper's value, its paired significance against a baseline model, the epochs and wall time of every
run (with the machine it trained on, where a book's runs come from several) and the command that
produced it.
Everything printed is read from those files; nothing is typed by hand.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import tomllib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from eclsr.engine import rundir
from eclsr.errors import EclsrError
from eclsr.results.by_length import LengthGroup, LengthSplit, grouped_tests, users_history
from eclsr.results.power import MAX_SEEDS, POWER_TARGET, plan_seeds
from eclsr.results.report import (
    PAPER_METRICS,
    RunRecord,
    check_protocols,
    load_ranks,
    load_run,
    mean_std,
    run_command,
)
from eclsr.results.seed_recipes import check_one_experiment
from eclsr.results.stats import (
    PairedTest,
    have_scipy,
    paired_tests,
    per_user_metric,
    welch_ttest,
)

MACHINE_FILE = "MACHINE.json"
# results.json key set by `collect --as`: the model a run stands for in this book, whatever its
# recipe's name (the same run can be a grid cell under one name and a headline row under another).
COLLECTED_AS = "collected_as"
_MODEL_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
KEPT_FILES = (rundir.RESULTS, "ranks.npz", rundir.METRICS, rundir.RECIPE)
# Written into every rendered file; an existing output without it was not made by us and is kept.
GENERATED_MARK = "Do not edit by hand: rerun the command."
SIGNIFICANCE_ALPHA = 0.01  # the paper's threshold (paired t-test, p < 0.01)
POWER_LABEL = f"n{round(POWER_TARGET * 100)}"  # n80: seeds a side for 80 % power
SEED_CONFOUNDED = "seeds differ, one a side: no `*`"


@dataclass
class ModelRuns:
    """The runs of one model on one dataset (one per seed)."""

    dataset: str
    model: str
    runs: list[RunRecord]


def dataset_name(results: dict[str, Any]) -> str:
    """The dataset a run was evaluated on, from its recorded protocol."""
    return str(results.get("protocol", {}).get("dataset", "unknown"))


def model_name(results: dict[str, Any]) -> str:
    """The recipe name without its dataset suffix: ``ecl-sr-code-toys`` → ``ecl-sr-code``.

    A run collected with ``--as MODEL`` is that model instead.
    """
    collected = results.get(COLLECTED_AS)
    if isinstance(collected, str) and collected:
        return collected
    recipe = str(results.get("recipe") or "recipe")
    dataset = results.get("protocol", {}).get("dataset")
    return recipe.removesuffix(f"-{dataset}") if dataset else recipe


def collect(run_dirs: Sequence[Path], book: Path, as_model: str | None = None) -> list[Path]:
    """Copy the small files of finished runs into ``book``; returns the folders written.

    A run already in the book (same dataset, model and seed) is replaced: re-collecting a rerun
    must not leave the old numbers beside the new ones. With ``as_model``, the runs are filed as
    that model (their copied ``results.json`` says so under ``collected_as``); the seeds of one
    model must still share one recipe, so a label can join runs only of the same setting.
    """
    if as_model is not None and not _MODEL_LABEL.fullmatch(as_model):
        msg = (
            f"--as {as_model!r} is not a model name: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit (it becomes a folder name), e.g. --as ecl-sr-code."
        )
        raise EclsrError(msg)
    runs = [load_run(run_dir) for run_dir in run_dirs]  # each fails clearly if not a finished run
    for run in runs:
        load_ranks(run)  # significance tests need the per-user ranks; fail now, not at render
        if as_model is not None:
            run.results[COLLECTED_AS] = as_model  # this copy only; the run directory is untouched
    _check_collected_seeds(runs, book)  # before anything is copied: the book stays as it was
    written = []
    for run in runs:
        target = _seed_folder(book, run)
        target.mkdir(parents=True, exist_ok=True)
        for name in KEPT_FILES:
            if as_model is not None and name == rundir.RESULTS:
                rundir.write_json(target / name, run.results)  # carries the collected_as label
            elif (run.path / name).is_file():
                shutil.copyfile(run.path / name, target / name)
        written.append(target)
    unrecorded = not all(_records_machine(run.results) for run in runs)
    if unrecorded and not (book / MACHINE_FILE).exists():
        # Only for runs too old to record their machine: this machine stands in for theirs. Runs
        # that record it need no stand-in, and a book of GPU runs collected on a laptop must not
        # say "laptop". Never overwritten: it describes the old runs already here, and a later
        # collection from another machine must not relabel them.
        rundir.write_json(book / MACHINE_FILE, rundir.machine_description())
    return written


def _records_machine(results: dict[str, Any]) -> bool:
    recorded = results.get("machine")
    return isinstance(recorded, dict) and bool(recorded)


def _seed_folder(book: Path, run: RunRecord) -> Path:
    model = model_name(run.results)
    return book / dataset_name(run.results) / model / f"seed-{run.results.get('seed')}"


def _check_collected_seeds(runs: Sequence[RunRecord], book: Path) -> None:
    """Refuse runs that would join a model's seeds in ``book`` with another recipe."""
    groups: dict[tuple[str, str], dict[Path, RunRecord]] = {}
    for run in runs:
        key = (dataset_name(run.results), model_name(run.results))
        group = groups.setdefault(key, {})
        if not group:
            for kept in sorted((book / key[0] / key[1]).glob(f"*/{rundir.RESULTS}")):
                group[kept.parent] = load_run(kept.parent)
        group[_seed_folder(book, run)] = run  # a rerun replaces its seed's collected copy
    for (dataset, model), group in groups.items():
        check_one_experiment(list(group.values()), dataset, model, f"collecting into {str(book)!r}")


def load_book(book: Path) -> list[ModelRuns]:
    """Every collected run under ``book``, grouped by (dataset, model), in a stable order."""
    if not book.is_dir():
        msg = f"results folder {str(book)!r} does not exist; fill it with `eclsr results collect`."
        raise EclsrError(msg)
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for results_file in sorted(book.rglob(rundir.RESULTS)):
        run = load_run(results_file.parent)
        groups.setdefault((dataset_name(run.results), model_name(run.results)), []).append(run)
    if not groups:
        msg = f"{str(book)!r} holds no results.json; fill it with `eclsr results collect RUN_DIR ...`."
        raise EclsrError(msg)
    for (dataset, model), runs in groups.items():
        check_one_experiment(runs, dataset, model, f"results folder {str(book)!r}")
    return [ModelRuns(dataset, model, runs) for (dataset, model), runs in sorted(groups.items())]


def load_paper(path: Path | None) -> dict[str, dict[str, dict[str, float]]]:
    """``dataset → model → metric → value`` from a TOML file of published numbers."""
    if path is None:
        return {}
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        msg = f"paper values file {str(path)!r} cannot be read ({exc}); it must be TOML: [dataset.model] metric = value."
        raise EclsrError(msg) from None
    return {
        dataset: {
            model: dict(values) for model, values in models.items() if isinstance(values, dict)
        }
        for dataset, models in table.items()
        if isinstance(models, dict)
    }


def paper_value(
    paper: dict[str, dict[str, dict[str, float]]], dataset: str, model: str, metric: str
) -> float | None:
    """The published value for ``model``, or for it without a ``-code`` (preset) suffix."""
    models = paper.get(dataset, {})
    model = model.rsplit("/", 1)[-1]  # several books: "<book>/<model>"
    for name in (model, model.removesuffix("-code")):
        if metric in models.get(name, {}):
            return float(models[name][metric])
    return None


def seed_ranks(group: ModelRuns, split: str = "test") -> tuple[np.ndarray, list[np.ndarray]]:
    """``(users, each seed's ranks on split)``, read once; every seed must rank the same users."""
    users, first = load_ranks(group.runs[0], split)
    ranks = [first]
    for run in group.runs[1:]:
        run_users, run_ranks = load_ranks(run, split)
        if not np.array_equal(run_users, users):
            msg = f"{run.path} ranked different users than {group.runs[0].path}; seeds of one model must share the split."
            raise EclsrError(msg)
        ranks.append(run_ranks)
    return users, ranks


def seed_mean(ranks: Sequence[np.ndarray], metric: str) -> np.ndarray:
    """Per-user ``metric`` averaged over seeds."""
    total = np.zeros(len(ranks[0]), dtype=np.float64)
    for seed in ranks:
        total += per_user_metric(seed, metric)
    return total / len(ranks)


def matched_seeds(baseline: ModelRuns, other: ModelRuns) -> tuple[ModelRuns, ModelRuns]:
    """Both models cut to the same number of seeds, the seeds they share first.

    Per-user values averaged over three seeds take the values 0, ⅓, ⅔, 1 where one seed's take
    0 or 1; the differences are then skewed even when both models are the same, and the
    Wilcoxon test (which asks about symmetry, not the mean) reports tiny p-values for noise.
    Averaging the same number of seeds on both sides keeps the paired differences symmetric
    under the null. Equal counts keep every seed, so this changes nothing for them.
    """
    count = min(len(baseline.runs), len(other.runs))
    shared = {_seed(run) for run in baseline.runs} & {_seed(run) for run in other.runs}

    def keep(group: ModelRuns) -> ModelRuns:
        ordered = sorted(group.runs, key=lambda run: (_seed(run) not in shared, seed_order(run)))
        return ModelRuns(group.dataset, group.model, ordered[:count])

    return keep(baseline), keep(other)


def significance(
    baseline: ModelRuns,
    other: ModelRuns,
    metrics: Sequence[str] = PAPER_METRICS,
    split: str = "test",
    allow_mismatch: bool = False,
) -> list[PairedTest]:
    """Paired tests (other − baseline) over per-user test metrics, seeds averaged per user.

    With unequal seed counts, both sides use the seeds :func:`matched_seeds` keeps.
    """
    _, ranks_a, ranks_b = matched_seed_ranks(baseline, other, split, allow_mismatch)
    return [
        paired_tests(seed_mean(ranks_a, metric), seed_mean(ranks_b, metric), metric)
        for metric in metrics
    ]


def matched_seed_ranks(
    baseline: ModelRuns, other: ModelRuns, split: str = "test", allow_mismatch: bool = False
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """``(users, baseline's ranks per seed, other's)`` over the seeds :func:`matched_seeds` keeps.

    ``allow_mismatch`` pairs runs whose protocols differ, as :func:`compare_runs` does.
    """
    check_protocols([*baseline.runs, *other.runs], allow_mismatch)
    baseline, other = matched_seeds(baseline, other)
    users_a, ranks_a = seed_ranks(baseline, split)
    users_b, ranks_b = seed_ranks(other, split)
    if not np.array_equal(users_a, users_b):
        msg = f"{baseline.model} and {other.model} on {baseline.dataset} ranked different users; they cannot be paired."
        raise EclsrError(msg)
    return users_a, ranks_a, ranks_b


def seed_length_groups(
    baseline: ModelRuns,
    other: ModelRuns,
    metrics: Sequence[str],
    split: str = "test",
    edges: list[int] | None = None,
    allow_mismatch: bool = False,
) -> list[LengthGroup]:
    """:func:`significance` within each history-length group (see :func:`grouped_tests`)."""
    users, ranks_a, ranks_b = matched_seed_ranks(baseline, other, split, allow_mismatch)
    return grouped_tests(
        users_history(baseline.runs[0], split, users),
        {m: seed_mean(ranks_a, m) for m in metrics},
        {m: seed_mean(ranks_b, m) for m in metrics},
        edges,
    )


def has_seed_test(baseline: ModelRuns, other: ModelRuns) -> bool:
    """Whether the two models can be tested across seeds: two seeds or more a side."""
    return len(baseline.runs) >= 2 and len(other.runs) >= 2


def across_seeds(
    baseline: ModelRuns, other: ModelRuns, metric: str, split: str = "test"
) -> float | None:
    """Welch's p for ``metric`` over each seed's value on ``split``; None without two seeds a side."""
    if not has_seed_test(baseline, other):
        return None
    a = np.array(seed_values(baseline, split, metric))
    b = np.array(seed_values(other, split, metric))
    return welch_ttest(a, b)[2]


def seed_values(group: ModelRuns, split: str, metric: str) -> list[float]:
    """Each seed's ``metric`` on ``split``, in the group's run order."""
    return [seed_value(run, split, metric) for run in group.runs]


def seed_value(run: RunRecord, split: str, metric: str) -> float:
    """One run's ``metric`` on ``split`` as its results.json records it."""
    try:
        return float(run.results[split][metric])
    except (KeyError, TypeError, ValueError):
        msg = f"{str(run.path / rundir.RESULTS)!r} records no {split} {metric}; rerun `eclsr evaluate` on it or leave the metric out."
        raise EclsrError(msg) from None


def load_books(books: Sequence[Path]) -> list[ModelRuns]:
    """The groups of one book as :func:`load_book` gives them; of several, each model named
    ``<folder name>/<model>`` so that the same recipe under two settings stays two models."""
    if len(books) == 1:
        return load_book(books[0])
    names = [book.name for book in books]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        msg = f"results folders are told apart by their names, and {', '.join(map(repr, repeated))} is given twice; render each alone or rename one."
        raise EclsrError(msg)
    groups = []
    for book in books:
        for group in load_book(book):
            groups.append(ModelRuns(group.dataset, f"{book.name}/{group.model}", group.runs))
    return groups


def render(
    book: Path | Sequence[Path],
    paper_file: Path | None = None,
    baseline: str = "sasrec-code",
    metrics: Sequence[str] = PAPER_METRICS,
    command: str = "",
    order: Sequence[str] = (),
    pairs: Sequence[tuple[str, str]] = (),
    by_length: LengthSplit | None = None,
) -> str:
    """The markdown results book for the runs collected under ``book`` (one folder or several).

    Models are listed in ``order`` (names not in it follow, baseline first, then by name). Every
    model is tested against ``baseline``; each ``(a, b)`` in ``pairs`` adds a test of b against a
    on the datasets that hold both (e.g. ECL-SR against ICL-SR: what RID adds). With
    ``by_length``, each pair (or, without pairs, each model against the baseline) is also tested
    per history-length group; that reads the datasets the recipes name.
    """
    paper = load_paper(paper_file)  # a broken paper file fails before any run is read
    books = [book] if isinstance(book, Path) else list(book)
    groups = sorted(load_books(books), key=lambda group: _rank(group.model, baseline, order))
    folders = ", ".join(f"`{folder.as_posix()}/`" for folder in books)
    machines = RunMachines.of(groups)
    lines = [
        "# Results",
        "",
        f"Generated by `{command or 'eclsr results render'}` from the run files under "
        f"{folders} (each run's `results.json`, per-user `ranks.npz` and per-epoch "
        f"`metrics.jsonl`). {GENERATED_MARK}",
        "",
        *_machine_lines(machines),
        *_protocol_lines(groups),
        *_paper_lines(paper_file),
    ]
    for dataset in sorted({group.dataset for group in groups}):  # groups stay in model order
        in_dataset = [group for group in groups if group.dataset == dataset]
        lines += _dataset_section(dataset, in_dataset, paper, baseline, metrics, pairs, machines)
        if by_length is not None:
            lines += _length_lines(in_dataset, baseline, pairs, metrics, by_length)
    return "\n".join(lines).rstrip() + "\n"


def _paper_lines(paper_file: Path | None) -> list[str]:
    if paper_file is None:
        return []
    return [
        f"Published values in brackets come from `{paper_file.as_posix()}`; a model without one has "
        "no published number there (a `-code` model is shown beside the paper's model of that name). "
        "Where the paper also gives the baseline's value, a `ratio to` table sets each model's gain "
        "over the baseline (seed means) beside the paper's: the figure that carries over to another "
        "data file or preset.",
        "",
    ]


def _rank(model: str, baseline: str, order: Sequence[str]) -> tuple[int, int, str]:
    position = list(order).index(model) if model in order else len(order)
    return position, 0 if model == baseline else 1, model


@dataclass
class RunMachines:
    """The machine each rendered run trained on, so that wall times are read against the right one.

    A run's own ``results.json`` records its machine; a run from before that record falls back to
    its book's ``MACHINE.json`` (written by the first collection into the book). Books are filled
    over many sessions, on whatever machine each one had, so one book may hold several.
    """

    of_run: dict[Path, str]  # seed folder -> its machine's description
    from_files: dict[str, set[str]]  # description -> the MACHINE.json files that stood in for runs

    @classmethod
    def of(cls, groups: Sequence[ModelRuns]) -> RunMachines:
        of_run: dict[Path, str] = {}
        from_files: dict[str, set[str]] = {}
        book_files: dict[Path, tuple[str, str]] = {}  # each book's MACHINE.json, read once
        for run in (run for group in groups for run in group.runs):
            if _records_machine(run.results):
                of_run[run.path] = _describe_machine(run.results["machine"])
                continue
            book = run.path.parents[2]  # <book>/<dataset>/<model>/seed-<seed>
            if book not in book_files:
                book_files[book] = _book_machine(book)
            description, stand_in = book_files[book]
            of_run[run.path] = description
            if stand_in:
                from_files.setdefault(description, set()).add(stand_in)
        return cls(of_run, from_files)

    @cached_property
    def counts(self) -> Counter[str]:
        return Counter(self.of_run.values())

    @cached_property
    def descriptions(self) -> list[str]:
        """Distinct machines in the order their first run is rendered.

        Not by run count: books grow a seed at a time, and letters that follow the counts would
        swap between two renders of a growing book, so every wall time in the diff would change.
        """
        return list(dict.fromkeys(self.of_run.values()))

    def label(self, run: RunRecord) -> str:
        """``A``, ``B``, … for the run's machine; ``""`` when every run shares one."""
        if len(self.descriptions) < 2:
            return ""
        return _machine_letter(self.descriptions.index(self.of_run[run.path]))

    def source(self, description: str) -> str:
        """Where the description came from: the runs' own records, or a stand-in file too."""
        files = sorted(self.from_files.get(description, ()))
        if not files:
            return "recorded by the runs"
        named = ", ".join(f"`{name}`" for name in files)
        return f"recorded by the runs, or by {named} for runs older than that record"


def _machine_letter(index: int) -> str:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return letters[index] if index < len(letters) else f"M{index + 1}"


def _book_machine(book: Path) -> tuple[str, str]:
    """The book's ``MACHINE.json`` described, and its name as a source (``""``: none usable)."""
    path = book / MACHINE_FILE
    if not path.is_file():
        return f"not recorded (runs of `{book.name}/` older than the per-run record)", ""
    try:
        machine = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        machine = None
    if not isinstance(machine, dict):
        return f"not shown: `{book.name}/{MACHINE_FILE}` is damaged", ""
    return _describe_machine(machine), f"{book.name}/{MACHINE_FILE}"


def _describe_machine(machine: dict[str, Any]) -> str:
    gpu = f", GPU {machine['cuda']}" if machine.get("cuda") else ", no GPU"
    return (
        f"{machine.get('cpu')}, {machine.get('cores')} cores, {machine.get('memory_gib')} GiB{gpu}; "
        f"{machine.get('system')}, Python {machine.get('python')}, torch {machine.get('torch')}"
    )


def _machine_lines(machines: RunMachines) -> list[str]:
    if not machines.descriptions:
        return []
    if len(machines.descriptions) == 1:
        only = machines.descriptions[0]
        return [f"Machine ({machines.source(only)}): {only}.", ""]
    lines = [
        "Machines. The runs did not all train on one machine: a wall time is followed by its "
        "machine's letter, and wall times compare only within one letter.",
        "",
    ]
    for index, description in enumerate(machines.descriptions):
        runs = machines.counts[description]
        lines.append(
            f"- {_machine_letter(index)}: {description} ({runs} run{'s' if runs != 1 else ''}; "
            f"{machines.source(description)})."
        )
    return [*lines, ""]


def _protocol_lines(groups: Sequence[ModelRuns]) -> list[str]:
    protocol = groups[0].runs[0].results.get("protocol", {})
    tests = "scipy.stats" if have_scipy() else "eclsr.results.stats (scipy not installed)"
    return [
        f"Protocol (recorded in every run): {protocol.get('split', '?')}; ranking "
        f"{protocol.get('ranking', '?')}; ties: {protocol.get('ties', '?')}; already-seen items "
        f"{'excluded' if protocol.get('exclude_seen') else 'not excluded'}. Test metrics at the "
        "epoch with the best validation value of the recipe's `train.monitor`.",
        "",
        f"Significance: two-sided paired t-test and Wilcoxon signed-rank test over per-user test "
        "metrics (per-user values averaged over seeds first; when the seed counts differ, over "
        "the same number of seeds on both sides, shared seeds first, named in the `users` "
        f"column), computed with {tests}. Where "
        "both models have two seeds or more, `seeds p` is Welch's t-test over the seeds' test "
        "values: the per-user tests hold each trained model fixed, this one asks whether the "
        "difference exceeds the seed-to-seed spread. Where it is not below "
        f"{SIGNIFICANCE_ALPHA}, `{POWER_LABEL}` is the number of seeds a side at which it would "
        f"be with {POWER_TARGET:.0%} power if the seeds so far gave the true difference and "
        f"spreads (a plan for more seeds, not evidence; `{POWER_LABEL}>{MAX_SEEDS}`: none). `*` "
        f"marks p < {SIGNIFICANCE_ALPHA} in every test shown; a test of one run against one "
        "run of another seed gets none (`" + SEED_CONFOUNDED + "`), since its per-user "
        "difference holds the seeds' difference too.",
        "",
    ]


def _dataset_section(
    dataset: str,
    groups: Sequence[ModelRuns],
    paper: dict[str, dict[str, dict[str, float]]],
    baseline: str,
    metrics: Sequence[str],
    pairs: Sequence[tuple[str, str]],
    machines: RunMachines,
) -> list[str]:
    header = ["model", "seeds", *metrics, "epochs (best)", "patience", "wall time"]
    lines = [f"## {dataset}", "", _row(header), "|" + "---|" * len(header)]
    for group in groups:
        cells = [group.model, _seed_list(group)]
        for metric in metrics:
            values = [float(run.results["test"][metric]) for run in group.runs]
            reference = paper_value(paper, dataset, group.model, metric)
            shown = mean_std(values, 4)
            cells.append(shown + (f" (paper {reference:.4f})" if reference is not None else ""))
        cells.append(", ".join(_epochs(run) for run in group.runs))
        cells.append(", ".join(str(_train_setting(run, "patience")) for run in group.runs))
        cells.append(", ".join(_wall_time(run, machines) for run in group.runs))
        lines.append(_row(cells))
    lines += ["", *_significance_lines(groups, baseline, metrics)]
    lines += _ratio_lines(dataset, groups, paper, baseline, metrics)
    lines += [*_pair_lines(groups, pairs, metrics), *_command_lines(groups), ""]
    return lines


def _ratio_lines(
    dataset: str,
    groups: Sequence[ModelRuns],
    paper: dict[str, dict[str, dict[str, float]]],
    baseline: str,
    metrics: Sequence[str],
) -> list[str]:
    """Each model's seed mean over the baseline's, beside the paper's ratio of the same two.

    A ratio carries over where absolute values do not: on a data file that differs from the
    paper's (Yelp), or under another preset, the paper's gain over its own baseline is the figure
    to compare with. Shown only where the paper has a ratio for some model and metric; then every
    model gets a row, so ablations without a published value still compare.
    """
    base = next((group for group in groups if group.model == baseline), None)
    if base is None:
        return []
    rows, has_paper = [], False
    for group in groups:
        if group is base:
            continue
        cells = [group.model]
        for metric in metrics:
            base_mean = _seed_mean(base, metric)
            ours = f"{_seed_mean(group, metric) / base_mean:.3f}" if base_mean else "–"
            published = paper_value(paper, dataset, group.model, metric)
            published_base = paper_value(paper, dataset, baseline, metric)
            if published is not None and published_base:
                ours += f" (paper {published / published_base:.3f})"
                has_paper = True
            cells.append(ours)
        rows.append(_row(cells))
    if not has_paper:
        return []
    header = [f"ratio to {baseline} (seed means)", *metrics]
    return [_row(header), "|" + "---|" * len(header), *rows, ""]


def _seed_mean(group: ModelRuns, metric: str) -> float:
    return statistics.fmean(seed_values(group, "test", metric))  # a missing metric fails clearly


def _significance_lines(
    groups: Sequence[ModelRuns], baseline: str, metrics: Sequence[str]
) -> list[str]:
    base = next((group for group in groups if group.model == baseline), None)
    others = [group for group in groups if group.model != baseline]
    if base is None or not others:
        return [f"No significance tests: this dataset needs `{baseline}` and another model.", ""]
    header = ["vs " + baseline, "users", *metrics]
    rows = [_test_row(other.model, base, other, metrics) for other in others]
    return [_row(header), "|" + "---|" * len(header), *rows, ""]


def _pair_lines(
    groups: Sequence[ModelRuns], pairs: Sequence[tuple[str, str]], metrics: Sequence[str]
) -> list[str]:
    by_model = {group.model: group for group in groups}
    present = [(a, b) for a, b in pairs if a in by_model and b in by_model]
    if not present:
        return []
    header = ["B vs A", "users", *metrics]
    rows = [_test_row(f"{b} vs {a}", by_model[a], by_model[b], metrics) for a, b in present]
    return [_row(header), "|" + "---|" * len(header), *rows, ""]


def _test_row(label: str, a: ModelRuns, b: ModelRuns, metrics: Sequence[str]) -> str:
    """One row of tests of ``b`` against ``a``: per-user paired tests, and across seeds."""
    tests = significance(a, b, metrics)
    users = str(tests[0].n)
    kept_a, kept_b = matched_seeds(a, b)
    seeds_differ = _seed_list(kept_a) != _seed_list(kept_b)
    # With one run a side there is no across-seed test; if the two runs also have different
    # seeds, their per-user difference mixes the seed's effect into the model's, so it earns
    # no star (same seed: the seed's draws are shared and the paired test is the best there is).
    confounded = seeds_differ and not has_seed_test(a, b)
    if len(a.runs) != len(b.runs) or seeds_differ:
        note = f"; {SEED_CONFOUNDED}" if confounded else ""
        users += f" (seeds {_seed_list(kept_a)} vs {_seed_list(kept_b)}{note})"
    cells = [label, users]
    for test in tests:
        p_values = [test.p_t, test.p_w]
        text = f"{test.diff:+.4f} (t p={test.p_t:.1e}, W p={test.p_w:.1e}"
        p_seeds = across_seeds(a, b, test.metric)
        if p_seeds is not None:
            p_values.append(p_seeds)
            text += f", seeds p={p_seeds:.1e}"
            if p_seeds >= SIGNIFICANCE_ALPHA:
                text += f", {_seeds_needed(a, b, test.metric)}"
        mark = " *" if max(p_values) < SIGNIFICANCE_ALPHA and not confounded else ""
        cells.append(f"{text}){mark}")
    return _row(cells)


def _seeds_needed(a: ModelRuns, b: ModelRuns, metric: str) -> str:
    """``n80=N``: the seeds a side Welch's test needs for POWER_TARGET power at the book's level."""
    plan = plan_seeds(
        seed_values(a, "test", metric),
        seed_values(b, "test", metric),
        SIGNIFICANCE_ALPHA,
    )
    if plan is None or plan.seeds_needed is None:
        return f"{POWER_LABEL}>{MAX_SEEDS}"
    return f"{POWER_LABEL}={plan.seeds_needed}"


def _length_lines(
    groups: Sequence[ModelRuns],
    baseline: str,
    pairs: Sequence[tuple[str, str]],
    metrics: Sequence[str],
    split: LengthSplit,
) -> list[str]:
    """One table per compared pair: the paired tests within each history-length group."""
    by_model = {group.model: group for group in groups}
    wanted = list(pairs) or [(baseline, g.model) for g in groups if g.model != baseline]
    lines = []
    for a, b in [(a, b) for a, b in wanted if a in by_model and b in by_model]:
        tests = seed_length_groups(by_model[a], by_model[b], metrics, edges=split.edges)
        kept_a, kept_b = matched_seeds(by_model[a], by_model[b])
        seeds = f"seeds {_seed_list(kept_a)} vs {_seed_list(kept_b)}"
        header = ["history", "users", *(f"{m}: A → B (B − A, t p)" for m in metrics)]
        lines += [
            f"{b} (B) vs {a} (A) by history length (items before the test target; {seeds}, "
            f"averaged per user):",
            "",
            _row(header),
            "|" + "---|" * len(header),
        ]
        for group in tests:
            cells = [group.label, str(group.users)]
            for test in group.tests:
                relative = f", {test.diff / test.mean_a:+.0%}" if test.mean_a > 0 else ""
                cells.append(
                    f"{test.mean_a:.4f} → {test.mean_b:.4f} ({test.diff:+.4f}{relative}, "
                    f"p={test.p_t:.1e})"
                )
            lines.append(_row(cells))
        lines.append("")
    return lines


def _command_lines(groups: Sequence[ModelRuns]) -> list[str]:
    lines = ["Commands:", ""]
    for group in groups:
        for run in group.runs:
            lines.append(
                f"- {group.model}, seed {run.results.get('seed')}: `{run_command(run.results, run_dir=run.path)}`"
                + _resumed_note(run.results)
                + _trained_note(run.results)
                + _collected_note(run.results)
                + _code_note(run.results)
            )
    return lines


def _resumed_note(results: dict[str, Any]) -> str:
    """For a run continued after a stop: the commands that resumed it (its code is theirs)."""
    resumed = results.get("resumed_with")
    if not isinstance(resumed, list) or not resumed:
        return ""
    return ", resumed with " + ", then ".join(f"`{command}`" for command in resumed)


def _trained_note(results: dict[str, Any]) -> str:
    """For a run re-scored by ``eclsr evaluate --out``: the command that trained its weights."""
    trained = results.get("trained_with")
    return f", re-scoring the run of `{trained}`" if isinstance(trained, str) and trained else ""


def _collected_note(results: dict[str, Any]) -> str:
    """For a run filed under another model name (``collect --as``): the name its recipe has."""
    if not isinstance(results.get(COLLECTED_AS), str):
        return ""
    return (
        f", collected as `{results[COLLECTED_AS]}` (its recipe is named `{results.get('recipe')}`)"
    )


def _code_note(results: dict[str, Any]) -> str:
    """`` (code 1a2b3c4)`` for a run that recorded its git commit; runs before that say nothing."""
    code = results.get("code")
    if not isinstance(code, dict) or not isinstance(code.get("git_commit"), str):
        return ""
    changed = " with local changes" if code.get("git_dirty") else ""
    machine = results.get("machine")
    cpu = f", {machine['cpu']}" if isinstance(machine, dict) and machine.get("cpu") else ""
    return f" (code {code['git_commit'][:7]}{changed}, eclsr {code.get('eclsr', '?')}{cpu})"


def _seed(run: RunRecord) -> Any:
    return run.results.get("seed")


def seed_order(run: RunRecord) -> tuple[int, str]:
    """Seeds in numeric order (42 before 100); a missing or odd seed last."""
    seed = _seed(run)
    return (0, f"{seed:020d}") if isinstance(seed, int) else (1, str(seed))


def _seed_list(group: ModelRuns) -> str:
    return ", ".join(str(_seed(run)) for run in group.runs)


def _train_setting(run: RunRecord, key: str) -> Any:
    return run.recipe.get("train", {}).get(key, "?")


def _epochs(run: RunRecord) -> str:
    # best_epoch counts from 0, as in metrics.jsonl; shown counting from 1 like epochs_run.
    best, last = run.results.get("best_epoch"), run.results.get("epochs_run")
    return f"{last} (best {best + 1})" if isinstance(best, int) else f"{last}"


def _wall_time(run: RunRecord, machines: RunMachines) -> str:
    label = machines.label(run)
    return _duration(run.results.get("seconds")) + (f" ({label})" if label else "")


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "?"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"
