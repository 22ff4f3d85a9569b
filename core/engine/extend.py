"""Extend a stopped run: raise its patience or epoch budget and train on, into a new directory.

Early stopping decides only *when* training stops, never what an epoch computes, and a resumed run
is bit-identical to an uninterrupted one. So a run stopped by patience P, continued with a larger
patience, is exactly the run that would have been started with it: the extension costs only the
extra epochs. Raising the values is the only change allowed; lowering one would not reproduce the
run it names (that run would have stopped earlier, before later improvements), and any other
change alters the trajectory. The extended run is written to a new directory, so the stopped run
keeps its results.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from eclsr.engine import rundir
from eclsr.errors import EclsrError

#: Recipe values that only say when training stops.
STOPPING_VALUES = ("train.patience", "train.epochs")
#: Files of the source run that the extension does not carry: it makes its own results.
_NOT_COPIED = frozenset({rundir.RESULTS, "ranks.npz", rundir.LOCK})


def extend_run(
    source: Path, target: Path, recipe: BaseModel, overrides: Sequence[str]
) -> BaseModel:
    """Check the extension of run ``source`` and copy it to ``target``; return its recipe.

    ``recipe`` is the run's own; what to resume in ``target`` is the returned one.
    """
    from eclsr.engine.checkpoint import load_latest_checkpoint

    extended = extended_recipe(source, recipe, overrides)
    checkpoint = load_latest_checkpoint(source)
    if checkpoint is not None:
        check_extensible(source, extended, int(checkpoint["stage"]))
    fork_run_dir(source, target, extended)
    return extended


def extended_recipe(run_dir: Path, recipe: BaseModel, overrides: Sequence[str]) -> BaseModel:
    """``recipe`` (the run's own) with ``--set`` overrides that may only raise stopping values."""
    from eclsr.recipe.load import apply_overrides, validate_recipe

    saved = recipe.model_dump(mode="json")
    source = f"{run_dir / rundir.RECIPE} with --set"
    extended = validate_recipe(apply_overrides(saved, overrides), source=source, load_plugins=False)
    changes = _changed_paths(saved, extended.model_dump(mode="json"))
    for path, (before, after) in changes.items():
        if path not in STOPPING_VALUES:
            msg = (
                f"eclsr resume --set {path}: a resumed run may only raise when it stops "
                f"({', '.join(STOPPING_VALUES)}); changing {path} ({before!r} → {after!r}) would "
                "make it another experiment. Start it with `eclsr run` and its own --out."
            )
            raise EclsrError(msg)
        if after < before:
            msg = (
                f"eclsr resume --set {path}={after}: lower than the run's {before}. A run started "
                f"with {after} may have stopped before {run_dir} did, so it is not a continuation "
                f"of it: start it with `eclsr run`, or pass a value of at least {before}."
            )
            raise EclsrError(msg)
    return extended


def check_extensible(run_dir: Path, recipe: BaseModel, stage: int) -> None:
    """Refuse a two-stage run past its first stage: raising the values would lengthen stage 1."""
    if recipe.train.schedule.name == "two_stage" and stage > 1:
        msg = (
            f"eclsr resume --set: {run_dir} is in stage {stage} of its two-stage schedule; "
            "stage 1 ended by the values being raised, so the extended run would differ from one "
            "started with them. Start that run with `eclsr run`."
        )
        raise EclsrError(msg)


def fork_run_dir(source: Path, target: Path, recipe: BaseModel) -> None:
    """Copy ``source``'s training state into the new run directory ``target`` under ``recipe``.

    The copy is made in a temporary sibling and renamed into place, so an interrupted fork leaves
    no half-copied run behind; ``source`` is locked meanwhile and left untouched.
    """
    rundir.check_run_dir(target, overwrite=False)
    if target.resolve() == source.resolve():
        msg = f"--out {str(target)!r} is the run being extended; choose a new directory."
        raise EclsrError(msg)
    rundir.make_dirs(target.parent)
    with rundir.locked(source):
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            for file in sorted(source.iterdir()):
                if (
                    file.is_file()
                    and file.name not in _NOT_COPIED
                    and not file.match(rundir.TEMPORARY)
                ):
                    shutil.copy2(file, staging / file.name)
            rundir.write_recipe(staging / rundir.RECIPE, recipe)
            if target.is_dir():  # an empty directory the user made: replace it
                target.rmdir()
            os.replace(staging, target)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise rundir.output_error(target, exc) from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def _changed_paths(before: Any, after: Any, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Dotted paths (``heads[1].weight``) whose values differ between two recipe dumps."""
    if isinstance(before, dict) and isinstance(after, dict):
        changes: dict[str, tuple[Any, Any]] = {}
        for key in before.keys() | after.keys():
            path = f"{prefix}.{key}" if prefix else str(key)
            changes |= _changed_paths(before.get(key), after.get(key), path)
        return changes
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        changes = {}
        for index, (old, new) in enumerate(zip(before, after, strict=True)):
            changes |= _changed_paths(old, new, f"{prefix}[{index}]")
        return changes
    return {} if before == after else {prefix: (before, after)}
