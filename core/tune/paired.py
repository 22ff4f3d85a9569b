"""``eclsr tune --paired BASELINE``: a fair comparison of two tuned recipes.

The baseline is tuned with the same trial budget, timeout, pruner, sampler seed and space shape
(every parameter whose path the baseline has; paths it lacks, such as a head only the other
recipe has, are dropped and listed). Both winners are then rerun with the same seeds, and their
test metrics are tested two ways, as the results book does:

- paired, per user: each user's metric averaged over the seeds, B − A (t-test and Wilcoxon);
- across seeds: each seed's mean metric, paired by seed (t-test; few samples, so weak).

The trials may train a cheap proxy (fewer epochs, one sequence per user) while the reruns train
the real thing: ``rerun_overrides`` (``--rerun-set``) change both winners alike for the reruns
only, which then live in a folder named after them, so a proxy rerun is never taken for a full one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
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
        command: the command line that reruns it, recorded in its ``results.json``.
    """

    recipe_data: dict[str, Any]
    folder: Path
    base_dir: Path | None
    command: str | None = None

    @property
    def finished(self) -> bool:
        return (self.folder / "results.json").is_file()


def reruns_folder(out: Path, rerun_overrides: Sequence[str] = ()) -> Path:
    """Where the reruns live: ``out/paired``, or ``out/paired-<overrides>`` with ``--rerun-set``.

    The overrides name the folder (a hash when they are long or odd), so reruns under other
    overrides never share, resume or reuse each other's seed folders.
    """
    if not rerun_overrides:
        return out / "paired"
    label = "+".join(rerun_overrides)
    if len(label) > 80 or not re.fullmatch(r"[A-Za-z0-9._=+\-\[\]]+", label):
        label = hashlib.sha256(label.encode()).hexdigest()[:12]
    return out / f"paired-{label}"


def plan_reruns(
    study: Any,
    out: Path,
    seeds: Sequence[int],
    threads: int | None,
    base_dir: Path | None,
    rerun_overrides: Sequence[str] = (),
    command: str | None = None,
) -> list[Rerun]:
    """The study's best recipe (with ``rerun_overrides``) once per seed, each in ``out/seed-S``."""
    from eclsr.recipe.load import apply_overrides

    data = apply_overrides(best_trial(study).user_attrs[RECIPE], rerun_overrides)
    data["name"] = f"{study.study_name}-best"
    if threads is not None:
        data["train"] = {**data.get("train", {}), "threads": threads}
    return [
        Rerun({**data, "seed": seed}, out / f"seed-{seed}", base_dir, command) for seed in seeds
    ]


def by_seed(tuned: Sequence[Rerun], baseline: Sequence[Rerun]) -> list[Rerun]:
    """Both winners' reruns interleaved seed by seed, so the first seeds finish paired first."""
    return [rerun for pair in zip(tuned, baseline, strict=True) for rerun in pair]


def run_reruns(
    reruns: Sequence[Rerun], workers: int = 1, plugin_files: Sequence[Path] = ()
) -> None:
    """Run every unfinished rerun in order; with ``workers`` > 1 on that many processes at once.

    An interrupted rerun resumes from its checkpoint, so rerunning the command finishes the job.
    A finished one is kept, after checking it ran this rerun's recipe. The processes share one
    queue, each taking the next rerun when its last one ends: a winner that trains three times
    longer than the other does not leave a process idle (the caller's threads per run keep
    workers × threads within the cores, as for the trials).
    """
    for rerun in reruns:
        if rerun.finished:
            _check_finished(rerun)
    pending = [rerun for rerun in reruns if not rerun.finished]
    workers = min(workers, len(pending))
    if workers <= 1:
        for rerun in pending:
            _run_one(rerun)
        return
    import multiprocessing

    from eclsr.tune.study import in_processes

    queue = multiprocessing.get_context("spawn").Queue()
    for rerun in pending:
        queue.put(rerun)
    for _ in range(workers):
        queue.put(None)  # one end mark a process
    jobs = [(queue, tuple(plugin_files)) for _ in range(workers)]
    in_processes(_rerun_worker, jobs, what="a rerun worker", resumed_by="the reruns")


def _rerun_worker(queue: Any, plugin_files: Sequence[Path]) -> None:
    """A spawned process: the ``--plugin`` files, then reruns from the queue until its end mark."""
    from eclsr.tune.study import load_plugin_files

    load_plugin_files(plugin_files)
    while (rerun := queue.get()) is not None:
        _run_one(rerun)


def _check_finished(rerun: Rerun) -> None:
    """A finished seed folder is kept only if it ran this recipe (another one is an error)."""
    from eclsr.engine import rundir
    from eclsr.engine.checkpoint import same_recipe
    from eclsr.recipe.load import parse_yaml, validate_recipe

    file = rerun.folder / rundir.RECIPE
    saved = parse_yaml(rundir.read_text(file), str(file)) if file.is_file() else None
    data = rerun.recipe_data
    if isinstance(saved, dict) and isinstance(saved.get("train"), dict):
        # The threads follow --workers, which may differ between the command's runs.
        data = {
            **data,
            "train": {**data.get("train", {}), "threads": saved["train"].get("threads")},
        }
    recipe = validate_recipe(data, source=str(rerun.folder), base_dir=rerun.base_dir)
    if not same_recipe(saved, recipe):
        msg = f"--paired: {rerun.folder} holds a finished run of another recipe than this rerun's (its recipe: {file}); the study's winner or the --set/--rerun-set values changed since. Move that folder away, or pass another --out."
        raise TuneError(msg)


def _run_one(rerun: Rerun) -> None:
    """One rerun: kept when finished, resumed from its checkpoint when interrupted."""
    from eclsr.engine.train import run
    from eclsr.recipe.load import validate_recipe

    if rerun.finished:
        return
    folder = rerun.folder
    recipe = validate_recipe(rerun.recipe_data, source=str(folder), base_dir=rerun.base_dir)
    resume = (folder / "checkpoints.json").is_file()
    run(
        recipe,
        folder,
        resume=resume,
        overwrite=not resume,
        progress=False,
        console=_quiet(),
        command=rerun.command,
    )


def _quiet() -> Any:
    from rich.console import Console

    return Console(quiet=True)


def valid_means(folders: Sequence[Path], metric: str) -> list[float]:
    """Each rerun's validation ``metric`` (the value its trial was chosen on)."""
    return [float(load_run(folder).results["valid"][metric]) for folder in folders]


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
