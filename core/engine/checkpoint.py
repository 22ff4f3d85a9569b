"""Epoch checkpoints for resuming: atomic files, a checksum manifest, fallback to the previous one.

A checkpoint holds only tensors and plain values and is read with ``torch.load(weights_only=True)``,
so a file crafted to run code when unpickled is refused, never executed.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from eclsr.engine import rundir
from eclsr.engine.model import Model
from eclsr.errors import EclsrError, RecipeMigrationWarning

CHECKPOINT_FORMAT = "eclsr-checkpoint-1"
MANIFEST = "checkpoints.json"
KEEP = 2  # the newest checkpoints kept; the older one is the fallback for a corrupt newest


def checkpoint_name(epoch: int) -> str:
    """File name of the checkpoint written after ``epoch`` epochs."""
    return f"checkpoint-{epoch:05d}.pt"


def save_checkpoint(run_dir: Path, epoch: int, state: dict[str, Any]) -> None:
    """Write the checkpoint atomically, record its sha256, prune older ones."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    name = checkpoint_name(epoch)
    rundir.atomic_write_bytes(run_dir / name, payload)
    entries = [e for e in read_manifest(run_dir) if e["file"] != name]
    entries.append({"file": name, "epoch": epoch, "sha256": hashlib.sha256(payload).hexdigest()})
    entries.sort(key=lambda e: e["epoch"])
    for stale in entries[:-KEEP]:
        (run_dir / stale["file"]).unlink(missing_ok=True)
    rundir.write_json(run_dir / MANIFEST, entries[-KEEP:])


def read_manifest(run_dir: Path) -> list[dict[str, Any]]:
    """The manifest's entries, oldest first (empty when there is none)."""
    file = run_dir / MANIFEST
    if not file.is_file():
        return []
    try:
        entries = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        msg = f"{file} is not a readable checkpoint manifest ({exc}); the run cannot be resumed."
        raise EclsrError(msg) from None
    return [e for e in entries if isinstance(e, dict) and {"file", "epoch", "sha256"} <= e.keys()]


def load_latest_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The newest checkpoint whose checksum matches, falling back (with a warning) to older ones."""
    for entry in reversed(read_manifest(run_dir)):
        file = run_dir / entry["file"]
        try:
            payload = file.read_bytes()
        except OSError:
            warnings.warn(f"checkpoint {file} is missing; trying the previous one", stacklevel=2)
            continue
        if hashlib.sha256(payload).hexdigest() != entry["sha256"]:
            warnings.warn(
                f"checkpoint {file} is corrupt or truncated (checksum mismatch); using the previous one",
                stacklevel=2,
            )
            continue
        return rundir.load_state(file)
    return None


@dataclass
class EarlyStopping:
    """Tracks the best value of the monitored metric and the epochs since it improved."""

    patience: int
    best: float = -math.inf
    best_epoch: int = -1
    bad_epochs: int = 0

    def update(self, value: float, epoch: int) -> bool:
        """Record ``value``; return True if it is a new best."""
        if value > self.best:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        """True once ``patience`` epochs passed without improvement."""
        return self.bad_epochs >= self.patience


@dataclass
class TrainState:
    """Everything that changes from epoch to epoch; saved in every checkpoint."""

    epoch: int = 0
    stage: int = 1
    stage_epoch: int = 0
    dropped: frozenset[str] = frozenset()
    stopper: EarlyStopping = field(default_factory=lambda: EarlyStopping(10))
    best_valid: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


def checkpoint_state(
    model: Model, optimizer: torch.optim.Optimizer, generator: torch.Generator, state: TrainState
) -> dict[str, Any]:
    """The full training state: weights, optimizer, RNGs, schedule, early stopping, history."""
    return {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "step_generator": generator.get_state(),
        "epoch": state.epoch,
        "stage": state.stage,
        "stage_epoch": state.stage_epoch,
        "dropped": sorted(state.dropped),
        "stopper": [state.stopper.best, state.stopper.best_epoch, state.stopper.bad_epochs],
        "best_valid": state.best_valid,
        "history": json.dumps(state.history),
    }


def restore_state(
    checkpoint: dict[str, Any],
    out_dir: Path | None,
    model: Model,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    state: TrainState,
) -> dict[str, Any]:
    """Load a checkpoint into the live objects; return the best model state so far."""
    try:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
    except (KeyError, RuntimeError, ValueError) as exc:
        msg = f"the checkpoint in {out_dir} does not fit this recipe's model ({str(exc).splitlines()[0][:200]}). Resume with the recipe the run was started with."
        raise EclsrError(msg) from None
    torch.set_rng_state(checkpoint["torch_rng"])
    if checkpoint["cuda_rng"]:
        torch.cuda.set_rng_state_all(checkpoint["cuda_rng"])
    generator.set_state(checkpoint["step_generator"])
    state.epoch, state.stage, state.stage_epoch = (
        checkpoint["epoch"],
        checkpoint["stage"],
        checkpoint["stage_epoch"],
    )
    state.dropped = frozenset(checkpoint["dropped"])
    best, best_epoch, bad = checkpoint["stopper"]
    state.stopper.best, state.stopper.best_epoch, state.stopper.bad_epochs = (
        float(best),
        int(best_epoch),
        int(bad),
    )
    state.best_valid = dict(checkpoint["best_valid"])
    state.history = json.loads(checkpoint["history"])
    assert out_dir is not None
    best_file = out_dir / rundir.BEST
    return (
        rundir.load_state(best_file)["model"]
        if best_file.is_file()
        else copy.deepcopy(model.state_dict())
    )


def same_recipe(saved: Any, recipe: Any) -> bool:
    """Whether a run directory's saved ``recipe.yaml`` is ``recipe``, as today's schema reads it.

    A recipe saved by an older eclsr may lack a field added since (with a default that never
    changes numbers) or use an old field name (migrated, see :mod:`eclsr.recipe.migrate`): it is
    validated again before comparing. Its plugin files were loaded already by the recipe being
    resumed: none is imported here.
    """
    current = recipe.model_dump(mode="json")
    if saved == current or not isinstance(saved, dict):
        return saved == current
    from eclsr.recipe.load import validate_recipe

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RecipeMigrationWarning)
            resolved = validate_recipe({**saved, "plugins": []}).model_dump(mode="json")
    except EclsrError:
        return False
    return {**resolved, "plugins": saved.get("plugins", [])} == current


def resume_checkpoint(out_dir: Path | None, recipe: Any) -> dict[str, Any] | None:
    """The checkpoint to resume from; errors when the run directory belongs to another recipe."""
    if out_dir is None or not (out_dir / rundir.RECIPE).is_file():
        msg = f"--resume: {out_dir} is not an eclsr run directory (no {rundir.RECIPE}). Pass the --out of the run to resume."
        raise EclsrError(msg)
    import yaml

    saved = yaml.safe_load((out_dir / rundir.RECIPE).read_text())
    if not same_recipe(saved, recipe):
        msg = f"--resume: {out_dir} was started with a different recipe. Resume it with the same recipe and --set overrides (its resolved recipe is {out_dir / rundir.RECIPE})."
        raise EclsrError(msg)
    checkpoint = load_latest_checkpoint(out_dir)
    if checkpoint is not None and checkpoint.get("format") != CHECKPOINT_FORMAT:
        msg = f"--resume: the checkpoint in {out_dir} was written by another eclsr version (format {checkpoint.get('format')!r}, expected {CHECKPOINT_FORMAT!r})."
        raise EclsrError(msg)
    return checkpoint
