"""The seeds of one model are one experiment: their recipes may differ only in the seed.

A results book and ``eclsr compare`` group runs by dataset and recipe name, then average and test
the seeds as one model. A run of the same name with another setting (a patience-10 extension
collected beside patience-5 seeds, a λ changed with ``--set`` but the name kept) would silently
enter that average. Each run directory keeps its resolved ``recipe.yaml``, so the check is exact:
read every seed's recipe the way today's schema reads it (old fields migrated, defaults filled, so
a run written before a field existed agrees with one written after) and compare all fields but
those that only say where, how fast or under what name a run trained.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from typing import Any

from eclsr.errors import EclsrError
from eclsr.recipe.load import validate_recipe
from eclsr.results.report import RunRecord

#: Fields that change where or how fast a run trains, or what it is called, never what it learns
#: (``[*]``: at any list index).
RUN_ONLY_FIELDS = frozenset(
    {
        "seed",
        "name",
        "description",
        "plugins",
        "data.data_dir",
        "data.cache",
        "data.cache_dir",
        "train.threads",
        "train.device",
        "train.compile",
        "train.tune_allocator",
        "train.tensorboard",
        "eval.batch_size",
        "eval.chunk_elements",
        "heads[*].chunk_elements",
    }
)
_INDEX = re.compile(r"\[\d+\]")


def _run_only(path: str) -> bool:
    return _INDEX.sub("[*]", path) in RUN_ONLY_FIELDS


def comparable_recipe(run: RunRecord) -> dict[str, Any]:
    """``run``'s recipe as flat ``path → value``, read by today's schema, run-only fields left out.

    A recipe naming a component that is not installed here cannot be read by the schema; it is
    compared as written (its seeds come from the same code, so they still agree field by field).
    """
    data: Any = run.recipe
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # migration notes are for someone resuming the run
            data = validate_recipe(run.recipe, source=str(run.path), load_plugins=False).model_dump(
                mode="json"
            )
    except EclsrError:
        pass
    return {path: value for path, value in _flat_paths(data).items() if not _run_only(path)}


def _flat_paths(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"heads": [{"weight": 1}]}`` → ``{"heads[0].weight": 1}``: the paths ``--set`` takes."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out |= _flat_paths(inner, f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(value, list) and value and any(isinstance(v, dict | list) for v in value):
        out = {}
        for index, inner in enumerate(value):
            out |= _flat_paths(inner, f"{prefix}[{index}]")
        return out
    return {prefix: value}


def recipe_differences(runs: Sequence[RunRecord]) -> list[str]:
    """One line per field on which the runs disagree, naming each value's seeds.

    ``train.patience: 5 (seeds 42, 43) vs 10 (seed 45)``. Runs whose recipe.yaml could not be
    read are left out: there is nothing to compare them with.
    """
    readable = [run for run in runs if run.recipe]
    recipes = [comparable_recipe(run) for run in readable]
    missing = object()
    lines = []
    for path in sorted(set().union(*recipes)) if recipes else []:
        by_value: dict[str, list[str]] = {}
        for run, recipe in zip(readable, recipes, strict=True):
            value = recipe.get(path, missing)
            shown = "<not set>" if value is missing else repr(value)
            by_value.setdefault(shown, []).append(str(run.results.get("seed", run.path.name)))
        if len(by_value) > 1:
            lines.append(
                f"{path}: "
                + " vs ".join(f"{value} ({_seeds(seeds)})" for value, seeds in by_value.items())
            )
    return lines


def _seeds(seeds: list[str]) -> str:
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)}"


def check_one_experiment(runs: Sequence[RunRecord], dataset: str, model: str, where: str) -> None:
    """Raise a located error when the seeds of ``model`` on ``dataset`` differ beyond the seed."""
    differences = recipe_differences(runs)
    if not differences:
        return
    shown = "\n".join(f"  - {line}" for line in differences[:12])
    more = f"\n  … and {len(differences) - 12} more" if len(differences) > 12 else ""
    msg = (
        f"{where}: the runs of {model!r} on {dataset} have recipes that differ beyond the seed:\n"
        f"{shown}{more}\nThe seeds of a model are averaged and tested as one experiment. Keep "
        "each setting in its own folder, or give the other setting its own recipe `name` "
        "(`--set name=...`) so that it is a model of its own."
    )
    raise EclsrError(msg)
