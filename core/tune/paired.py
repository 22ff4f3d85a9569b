"""``eclsr tune --paired BASELINE``: a fair comparison of two tuned recipes.

The baseline is tuned with the same trial budget, timeout, pruner, sampler seed and space shape
(every parameter whose path the baseline has; paths it lacks, such as a head only the other
recipe has, are dropped and listed). Both winners are then rerun with the same seeds, and their
test metrics are tested two ways, as the results book does:

- paired, per user: each user's metric averaged over the seeds, B − A (t-test and Wilcoxon);
- across seeds: each seed's mean metric, paired by seed (t-test; few samples, so weak).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eclsr.errors import TuneError
from eclsr.results.headline import ModelRuns, significance
from eclsr.results.report import load_ranks, load_run
from eclsr.results.stats import PairedTest, paired_tests, per_user_metric
from eclsr.tune.report import best_trial
from eclsr.tune.space import restrict
from eclsr.tune.study import RECIPE, TuneSettings

METRICS = ("recall@10", "ndcg@10")


def baseline_settings(
    settings: TuneSettings, data: dict[str, Any], recipe: Any, base_dir: Path
) -> tuple[TuneSettings, list[str]]:
    """The baseline's study: same budget and space shape; returns it and the dropped paths."""
    space, dropped = restrict(settings.space, recipe)
    if not space.params:
        msg = f"--paired: none of the space's paths ({', '.join(p.path for p in settings.space.params)}) exists in the baseline recipe, so it has nothing to tune. Add a shared value (train.lr, encoder.dropout) to the space."
        raise TuneError(msg)
    tuned = dataclasses.replace(
        settings,
        recipe_data=data,
        space=space,
        study_name=f"{settings.study_name}-baseline",
        out=settings.out / "baseline",
        # The same storage holds both studies; the default SQLite file stays the tuned one's.
        storage=settings.storage_url,
        base_dir=base_dir,
    )
    return tuned, dropped


@dataclass(frozen=True)
class Rerun:
    """One seed of a winner's rerun (picklable: reruns run in spawned processes).

    Attributes:
        recipe_data: the winner's recipe with this seed (and the worker's threads).
        folder: its run directory; a finished one is kept, an interrupted one resumed.
        base_dir: the recipe's folder (its ``plugins`` files are relative to it).
    """

    recipe_data: dict[str, Any]
    folder: Path
    base_dir: Path | None

    @property
    def finished(self) -> bool:
        return (self.folder / "results.json").is_file()


def plan_reruns(
    study: Any, out: Path, seeds: Sequence[int], threads: int | None, base_dir: Path | None
) -> list[Rerun]:
    """The study's best recipe once per seed, each under ``out/seed-S``."""
    data = dict(best_trial(study).user_attrs[RECIPE])
    data["name"] = f"{study.study_name}-best"
    if threads is not None:
        data["train"] = {**data.get("train", {}), "threads": threads}
    return [Rerun({**data, "seed": seed}, out / f"seed-{seed}", base_dir) for seed in seeds]


def run_reruns(
    reruns: Sequence[Rerun], workers: int = 1, plugin_files: Sequence[Path] = ()
) -> None:
    """Run every unfinished rerun; with ``workers`` > 1 on that many processes at once.

    An interrupted rerun resumes from its checkpoint, so rerunning the command finishes the job.
    Each process takes every ``workers``-th rerun in turn (the caller's threads per run keep
    workers × threads within the cores, as for the trials).
    """
    pending = [rerun for rerun in reruns if not rerun.finished]
    workers = min(workers, len(pending))
    if workers <= 1:
        for rerun in pending:
            _run_one(rerun)
        return
    from eclsr.tune.study import in_processes

    jobs = [(pending[worker::workers], tuple(plugin_files)) for worker in range(workers)]
    in_processes(_rerun_worker, jobs, what="a rerun worker", resumed_by="the reruns")


def _rerun_worker(reruns: Sequence[Rerun], plugin_files: Sequence[Path]) -> None:
    """A spawned process: the ``--plugin`` files, then its share of the reruns in order."""
    from eclsr.tune.study import load_plugin_files

    load_plugin_files(plugin_files)
    for rerun in reruns:
        _run_one(rerun)


def _run_one(rerun: Rerun) -> None:
    """One rerun: kept when finished, resumed from its checkpoint when interrupted."""
    from eclsr.engine.train import run
    from eclsr.recipe.load import validate_recipe

    if rerun.finished:
        return
    folder = rerun.folder
    recipe = validate_recipe(rerun.recipe_data, source=str(folder), base_dir=rerun.base_dir)
    resume = (folder / "checkpoints.json").is_file()
    run(recipe, folder, resume=resume, overwrite=not resume, progress=False, console=_quiet())


def _quiet() -> Any:
    from rich.console import Console

    return Console(quiet=True)


@dataclass(frozen=True)
class PairedOutcome:
    """The reruns of both winners and the tests (B = tuned recipe, A = tuned baseline).

    Attributes:
        tuned, baseline: run directories, one per seed, in seed order.
        seeds: the seeds.
        seed_means: ``{"tuned"|"baseline": {metric: [mean per seed]}}`` on the test split.
        per_user: paired tests over users, each user's metric averaged over seeds.
        across_seeds: paired tests over seeds of the seed means.
    """

    tuned: list[Path]
    baseline: list[Path]
    seeds: list[int]
    seed_means: dict[str, dict[str, list[float]]]
    per_user: list[PairedTest]
    across_seeds: list[PairedTest]


def compare(
    tuned: Sequence[Path], baseline: Sequence[Path], seeds: Sequence[int], metrics: Sequence[str]
) -> PairedOutcome:
    """Test the tuned recipe's seeds against the baseline's on the test split."""
    runs = {"tuned": [load_run(p) for p in tuned], "baseline": [load_run(p) for p in baseline]}
    groups = {name: ModelRuns("", name, records) for name, records in runs.items()}
    per_user = significance(groups["baseline"], groups["tuned"], metrics)
    means: dict[str, dict[str, list[float]]] = {}
    for name, records in runs.items():
        ranks = [load_ranks(record)[1] for record in records]
        means[name] = {m: [float(per_user_metric(r, m).mean()) for r in ranks] for m in metrics}
    across = []
    for metric in metrics:
        a, b = np.array(means["baseline"][metric]), np.array(means["tuned"][metric])
        if a.size < 2:
            msg = f"--paired: the across-seed test needs at least two seeds, got {a.size}; pass --seeds 2 or more."
            raise TuneError(msg)
        across.append(paired_tests(a, b, metric))
    return PairedOutcome(list(tuned), list(baseline), list(seeds), means, per_user, across)
