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


def rerun_best(
    study: Any, out: Path, seeds: Sequence[int], threads: int | None, base_dir: Path | None
) -> list[Path]:
    """Run the study's best recipe once per seed under ``out/seed-S``; finished seeds are kept.

    An interrupted seed resumes from its checkpoint, so rerunning the command finishes the job.
    """
    from eclsr.engine.train import run
    from eclsr.recipe.load import validate_recipe

    data = dict(best_trial(study).user_attrs[RECIPE])
    data["name"] = f"{study.study_name}-best"
    if threads is not None:
        data["train"] = {**data.get("train", {}), "threads": threads}
    folders = []
    for seed in seeds:
        folder = out / f"seed-{seed}"
        folders.append(folder)
        if (folder / "results.json").is_file():
            continue
        recipe = validate_recipe({**data, "seed": seed}, source=str(folder), base_dir=base_dir)
        resume = (folder / "checkpoints.json").is_file()
        run(recipe, folder, resume=resume, overwrite=not resume, progress=False, console=_quiet())
    return folders


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
