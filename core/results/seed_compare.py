"""``eclsr compare`` over seeds: each side one run, or a folder holding one model's seeds.

One run per side answers "is B better than A for this training run?"; the per-user tests then
treat each run as fixed and ignore how much a metric moves from seed to seed (on Toys two SASRec
seeds once differed by as much as ECL-SR's gain). With a folder of seeds on a side, the per-user
tests average each user's metric over the seeds both sides share (the same count on both sides,
see :func:`eclsr.results.headline.matched_seeds`) and Welch's test across seeds is added, the same
tests ``eclsr results render --pair`` writes into a results book.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eclsr.engine import rundir
from eclsr.errors import EclsrError
from eclsr.results.headline import (
    ModelRuns,
    across_seeds,
    dataset_name,
    matched_seeds,
    model_name,
    seed_order,
    seed_values,
    significance,
)
from eclsr.results.power import SeedPlan, plan_seeds
from eclsr.results.report import RunRecord, load_run
from eclsr.results.seed_recipes import check_one_experiment
from eclsr.results.stats import PairedTest


@dataclass(frozen=True)
class SeedTest:
    """One metric: the per-user tests over matched seeds and Welch's test across all seeds."""

    test: PairedTest  # per-user values averaged over ``paired_a`` / ``paired_b``
    paired_a: list[Any]
    paired_b: list[Any]
    p_seeds: float | None  # over every seed of each side; None with fewer than two on a side
    plan: SeedPlan | None  # Welch's power now and the seeds a side it needs; None as p_seeds


def load_side(path: Path) -> ModelRuns:
    """A run directory as one seed, or a folder whose subfolders are runs of one model.

    A collected model folder (``results/headline/toys/ecl-sr-code`` holding ``seed-42/``, ...) is
    the usual second form. Runs of different models, or two runs of one seed, are refused: the
    per-user average would mix what the user meant to keep apart.
    """
    if (path / rundir.RESULTS).is_file() or not path.is_dir():
        run = load_run(path)  # its own located error when the path is not a run
        return ModelRuns(dataset_name(run.results), model_name(run.results), [run])
    runs = [load_run(sub) for sub in sorted(path.iterdir()) if (sub / rundir.RESULTS).is_file()]
    if not runs:
        raise EclsrError(_not_a_side(path))
    runs.sort(key=seed_order)
    dataset, model = _one_model(path, runs)
    check_one_experiment(runs, dataset, model, repr(str(path)))
    return ModelRuns(dataset, model, runs)


def _not_a_side(path: Path) -> str:
    """Why ``path`` is no side, naming the model folders below it when it is a level too high."""
    below = sorted(
        str(sub.relative_to(path))
        for sub in path.glob("*/*")
        if sub.is_dir() and (sub / rundir.RESULTS).is_file()
    )
    folders = sorted({str(Path(name).parent) for name in below})
    if folders:
        named = ", ".join(repr(str(path / f)) for f in folders[:6])
        more = f" and {len(folders) - 6} more" if len(folders) > 6 else ""
        return f"{str(path)!r} holds folders of runs, not runs: give one of {named}{more}."
    return (
        f"{str(path)!r} is neither a run directory (no {rundir.RESULTS}) nor a folder of runs "
        f"(no subfolder holds one). Give a run directory or a collected model folder such as "
        f"results/headline/toys/sasrec-code."
    )


def _one_model(path: Path, runs: Sequence[RunRecord]) -> tuple[str, str]:
    models = sorted({(dataset_name(r.results), model_name(r.results)) for r in runs})
    if len(models) > 1:
        named = ", ".join(f"{model} on {dataset}" for dataset, model in models)
        msg = f"{str(path)!r} holds runs of several models ({named}); compare one model's seeds per side."
        raise EclsrError(msg)
    seen: dict[Any, Path] = {}
    for run in runs:
        seed = run.results.get("seed")
        if seed in seen:
            msg = f"{str(path)!r} holds two runs with seed {seed!r} ({seen[seed].name}, {run.path.name}); keep one of them per side."
            raise EclsrError(msg)
        seen[seed] = run.path
    return models[0]


def compare_seeds(
    side_a: ModelRuns,
    side_b: ModelRuns,
    metrics: Sequence[str],
    split: str = "test",
    allow_mismatch: bool = False,
    alpha: float = 0.01,
) -> list[SeedTest]:
    """Per metric, B − A: paired tests over seed-averaged users, Welch across seeds, and how
    many seeds a side Welch's test would need at ``alpha`` if the seeds so far tell the truth."""
    per_user = significance(side_a, side_b, metrics, split, allow_mismatch)
    kept_a, kept_b = matched_seeds(side_a, side_b)
    return [
        SeedTest(
            test,
            seeds(kept_a),
            seeds(kept_b),
            across_seeds(side_a, side_b, test.metric, split),
            plan_seeds(
                seed_values(side_a, split, test.metric),
                seed_values(side_b, split, test.metric),
                alpha,
            ),
        )
        for test in per_user
    ]


def seeds(side: ModelRuns) -> list[Any]:
    """The seeds of a side, in its runs' order."""
    return [run.results.get("seed") for run in side.runs]
