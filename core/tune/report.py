"""Reading a study back: its best recipe as runnable TOML, the top trials, and PNG plots."""

from __future__ import annotations

import datetime
import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eclsr.errors import TuneError
from eclsr.tune.study import ERROR, PRUNED_AT, RECIPE, RUN_DIR, counts, open_storage, require_optuna


def load_study(name: str, storage_url: str) -> Any:
    """Load a stored study, or say which studies the storage holds."""
    optuna = require_optuna()
    storage = open_storage(storage_url)
    names = [
        s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
    ]
    if name not in names:
        listed = ", ".join(map(repr, names)) or "none"
        msg = f"study {name!r} is not in {storage_url}. Studies there: {listed}. Pass the name given to --study (default: the recipe name) and the same --storage or --out."
        raise TuneError(msg)
    return optuna.load_study(study_name=name, storage=storage)


@dataclass(frozen=True)
class TrialRow:
    """One line of the top-trials table."""

    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    epochs: int | None
    run_dir: str
    note: str


def trial_rows(study: Any, top: int) -> list[TrialRow]:
    """The ``top`` best finished trials, best first, then the failed and pruned ones in order."""
    trials = [t for t in study.get_trials(deepcopy=False) if counts(t)]
    done = sorted((t for t in trials if t.state.name == "COMPLETE"), key=lambda t: -t.value)
    rest = [t for t in trials if t.state.name != "COMPLETE"]
    return [_row(t) for t in done[:top]] + [_row(t) for t in rest[: max(0, top - len(done))]]


def _row(trial: Any) -> TrialRow:
    attrs = trial.user_attrs
    intermediate = trial.intermediate_values
    note = attrs.get(ERROR, "")
    if PRUNED_AT in attrs:
        note = f"pruned after epoch {attrs[PRUNED_AT]}"
    value = trial.value
    if value is None and intermediate:  # a pruned trial: its last reported value
        value = intermediate[max(intermediate)]
    return TrialRow(
        trial.number,
        trial.state.name,
        value,
        dict(trial.params),
        len(intermediate) or None,
        attrs.get(RUN_DIR, ""),
        note,
    )


def best_trial(study: Any) -> Any:
    """The best complete trial, or a clear error when none finished."""
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if not complete:
        msg = f"study {study.study_name!r} has no complete trial yet ({len(study.trials)} in all); run more trials or check their errors with `eclsr tune report`."
        raise TuneError(msg)
    return max(complete, key=lambda t: t.value)


def best_recipe_toml(study: Any, name: str | None = None) -> str:
    """The best trial's recipe as a TOML file ``eclsr run`` accepts."""
    trial = best_trial(study)
    data = dict(trial.user_attrs[RECIPE])
    data["name"] = name or f"{study.study_name}-best"
    metric = study.user_attrs.get("metric", "value")
    params = ", ".join(f"{k} = {v!r}" for k, v in trial.params.items())
    header = (
        f"# The best trial ({trial.number}) of study {study.study_name!r}: valid {metric} = {trial.value:.6f}.\n"
        f"# Tuned values: {params}\n"
        "# Run it with: eclsr run THIS_FILE.toml\n"
    )
    return header + to_toml(data)


def to_toml(data: Mapping[str, Any]) -> str:
    """Write a recipe dict as TOML: scalars first, then tables and arrays of tables.

    Deeper tables are inline (``encoder = { name = "bert4rec", layers = 1 }``), as recipes are
    written by hand. ``None`` has no TOML form: such keys are left out (their default applies).
    """
    lines: list[str] = []
    tables: list[str] = []
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            tables += ["", f"[{_key(key)}]"] + _entries(value)
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            for entry in value:
                tables += ["", f"[[{_key(key)}]]"] + _entries(entry)
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    return "\n".join(lines + tables).lstrip("\n") + "\n"


def _entries(table: Mapping[str, Any]) -> list[str]:
    return [f"{_key(k)} = {_value(v)}" for k, v in table.items() if v is not None]


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON escapes are valid TOML basic-string escapes
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None)
        return "{ " + inner + " }" if inner else "{}"
    msg = f"cannot write {value!r} ({type(value).__name__}) as TOML."
    raise TuneError(msg)


def have_matplotlib() -> bool:
    """True when matplotlib can be imported (plots are skipped without it)."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def write_plots(study: Any, folder: Path) -> tuple[list[Path], list[str]]:
    """History, parameter importance and one slice per parameter as PNGs; returns (files, notes).

    A plot Optuna cannot draw yet (importance needs two complete trials that differ) becomes a
    note instead of an error, so a small study still gets the rest.
    """
    optuna = require_optuna()
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    folder.mkdir(parents=True, exist_ok=True)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    names = sorted({name for t in complete for name in t.params})
    jobs: list[tuple[str, Any]] = [("history", lambda: plots.plot_optimization_history(study))]
    if len(complete) >= 2 and names:
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()  # no scikit-learn needed
        jobs.append(
            ("importance", lambda: plots.plot_param_importances(study, evaluator=evaluator))
        )
    for name in names:
        jobs.append(
            (f"slice-{_file_safe(name)}", lambda n=name: plots.plot_slice(study, params=[n]))
        )
    written, notes = [], []
    for stem, draw in jobs:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                axes = draw()
        except Exception as exc:  # a plot that needs more trials must not cost the others
            notes.append(f"{stem}: not drawn ({' '.join(str(exc).split())[:200]})")
            continue
        figure = _figure(axes)
        path = folder / f"{stem}.png"
        figure.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(figure)
        written.append(path)
    if len(complete) < 2:
        notes.append("importance: needs at least two complete trials")
    return written, notes


def _figure(axes: Any) -> Any:
    first = axes.flat[0] if hasattr(axes, "flat") else axes
    return first.figure


def _file_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
