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
import re
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
#: A manifest entry must name a checkpoint file inside the run directory itself: a crafted
#: manifest could otherwise make eclsr read (or, when pruning, delete) any file on the machine.
_ENTRY_FILE = re.compile(r"checkpoint-\d{5,}\.pt")


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
    """The manifest's entries, oldest first (empty when there is none).

    Raises:
        EclsrError: the manifest is unreadable, or an entry points outside the run directory.
    """
    file = run_dir / MANIFEST
    if not file.is_file():
        return []
    try:
        entries = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"{file} is not a readable checkpoint manifest ({exc}); the run cannot be resumed."
        raise EclsrError(msg) from None
    if not isinstance(entries, list):
        msg = f"{file} is not a checkpoint manifest (expected a list of entries); the run cannot be resumed."
        raise EclsrError(msg)
    usable = [e for e in entries if isinstance(e, dict) and {"file", "epoch", "sha256"} <= e.keys()]
    for entry in usable:
        if not isinstance(entry["file"], str) or not _ENTRY_FILE.fullmatch(entry["file"]):
            msg = (
                f"{file} names {entry['file']!r}, which is not a checkpoint file of this run "
                "directory (entries must look like 'checkpoint-00003.pt', with no folder). "
                "Refusing to read it: the manifest was edited or does not belong to this run."
            )
            raise EclsrError(msg)
        if not isinstance(entry["epoch"], int) or not isinstance(entry["sha256"], str):
            msg = f"{file}: entry {entry['file']!r} has a non-integer epoch or a non-text checksum; the manifest is damaged."
            raise EclsrError(msg)
    return usable


def load_latest_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The newest usable checkpoint, falling back (with a warning) to older ones.

    A checkpoint is skipped when it is missing, its checksum differs, it cannot be loaded with
    ``weights_only=True``, or its checksum matches but its contents are not a checkpoint's (an
    edited or foreign file): in each case the previous one is tried.
    """
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
        try:
            state = rundir.load_state(file)
        except EclsrError as exc:
            warnings.warn(f"{exc} Using the previous one.", stacklevel=2)
            continue
        problem = checkpoint_problem(state)
        if problem is not None:
            warnings.warn(
                f"checkpoint {file} cannot be used ({problem}); using the previous one",
                stacklevel=2,
            )
            continue
        return state
    return None


#: Each key of a checkpoint and the type(s) its value must have.
_FIELDS: dict[str, type | tuple[type, ...]] = {
    "model": dict,
    "optimizer": dict,
    "torch_rng": torch.Tensor,
    "cuda_rng": (list, tuple),
    "step_generator": torch.Tensor,
    "epoch": int,
    "stage": int,
    "stage_epoch": int,
    "dropped": (list, tuple),
    "stopper": (list, tuple),
    "best_valid": dict,
    "history": str,
}


def checkpoint_problem(state: object) -> str | None:
    """What makes ``state`` unusable as a checkpoint of this format, or None when it looks right.

    A checkpoint of another format is left to :func:`resume_checkpoint`, which names the version.
    """
    if not isinstance(state, dict):
        return f"it holds a {type(state).__name__}, not a checkpoint dict"
    if state.get("format") != CHECKPOINT_FORMAT:
        return None
    for key, kind in _FIELDS.items():
        if key not in state:
            return f"no {key!r} entry"
        if not isinstance(state[key], kind) or isinstance(state[key], bool):
            return f"{key!r} is a {type(state[key]).__name__}"
    if len(state["stopper"]) != 3:
        return "'stopper' must hold 3 values"
    if not all(isinstance(v, torch.Tensor) for v in state["model"].values()):
        return "'model' holds values that are not tensors"
    try:
        json.loads(state["history"])
    except ValueError:
        return "'history' is not JSON"
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
    #: The command line that started the run, and those that resumed it: a resumed run's
    #: results must still say how it was made.
    command: str | None = None
    resumed_with: list[str] = field(default_factory=list)
    #: Wall seconds spent by earlier processes of this run, up to their last checkpoint.
    seconds_before: float = 0.0


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
        "command": state.command,
        "resumed_with": list(state.resumed_with),
        "seconds": state.seconds_before,
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
        torch.set_rng_state(checkpoint["torch_rng"])
        if checkpoint["cuda_rng"]:
            torch.cuda.set_rng_state_all(checkpoint["cuda_rng"])
        generator.set_state(checkpoint["step_generator"])
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        msg = f"the checkpoint in {out_dir} does not fit this recipe's model ({str(exc).splitlines()[0][:200]}). Resume with the recipe the run was started with."
        raise EclsrError(msg) from None
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
    # Checkpoints written before these were kept lack them: the starting command is then unknown.
    state.command = checkpoint.get("command")
    state.resumed_with = list(checkpoint.get("resumed_with", []))
    state.seconds_before = float(checkpoint.get("seconds", 0.0))
    assert out_dir is not None
    best_file = out_dir / rundir.BEST
    if not best_file.is_file():
        return copy.deepcopy(model.state_dict())
    loaded = rundir.load_state(best_file)
    best_model = loaded.get("model") if isinstance(loaded, dict) else None
    if not isinstance(best_model, dict):
        msg = f"{best_file} holds no model weights, so the best epoch so far is lost; the run cannot be resumed. Its checkpoints and metrics are kept; start a new run with another --out."
        raise EclsrError(msg)
    return best_model


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
    from eclsr.recipe.load import parse_yaml

    saved = parse_yaml(rundir.read_text(out_dir / rundir.RECIPE), str(out_dir / rundir.RECIPE))
    if not same_recipe(saved, recipe):
        msg = f"--resume: {out_dir} was started with a different recipe. Resume it with the same recipe and --set overrides (its resolved recipe is {out_dir / rundir.RECIPE})."
        raise EclsrError(msg)
    checkpoint = load_latest_checkpoint(out_dir)
    if checkpoint is not None and checkpoint.get("format") != CHECKPOINT_FORMAT:
        msg = f"--resume: the checkpoint in {out_dir} was written by another eclsr version (format {checkpoint.get('format')!r}, expected {CHECKPOINT_FORMAT!r})."
        raise EclsrError(msg)
    return checkpoint
