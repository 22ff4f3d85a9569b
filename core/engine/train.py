"""The training loop: one readable function from a validated recipe to test metrics.

recipe → dataset → leave-one-out windows → model → epochs (train, validate, early stop) →
best checkpoint → test. Evaluation, checkpointing and logging are plain functions it calls.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from eclsr.data.batching import epoch_order, positions_per_epoch, targets_per_epoch
from eclsr.data.sequences import SequenceDataset
from eclsr.data.splits import LeaveOneOut, TimeSplit, Windows
from eclsr.engine import rundir
from eclsr.engine.checkpoint import (
    EarlyStopping,
    TrainState,
    checkpoint_state,
    restore_state,
    resume_checkpoint,
    save_checkpoint,
)
from eclsr.engine.distributed import mean_over_ranks, sum_over_ranks, world
from eclsr.engine.evaluate import TIE_RULES, metrics_from_ranks, popularity_ranks, rank_all
from eclsr.engine.model import Model
from eclsr.engine.setup import RunSetup, check_finite_parameters, set_up_run
from eclsr.errors import EclsrError, RunInterrupted


@dataclass
class RunResult:
    """What :func:`run` returns."""

    results: dict[str, Any]
    model: Model
    run_dir: Path | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


SPLIT_TEXT = {
    "LeaveOneOut": "leave_one_out (test = last item, valid = second last; test history includes valid item)",
    "TimeSplit": "time (train = before the first cut-off; valid/test = each user's first item after each cut-off, with its full earlier history)",
}


def protocol(recipe: Any, data: SequenceDataset, split: LeaveOneOut | TimeSplit) -> dict[str, Any]:
    """Everything that decides what a metric means, recorded with every result."""
    return {
        "dataset": data.name,
        "dataset_sha256": data.source_hash,
        "preprocessing": data.protocol,
        "users": data.num_users,
        "items": data.num_items,
        "split": SPLIT_TEXT[type(split).__name__],
        "max_len": split.max_len,
        "training_examples": recipe.train.examples.model_dump(mode="json"),
        "ranking": "full (all items; padding never ranked)",
        "exclude_seen": recipe.eval.exclude_seen,
        "ties": TIE_RULES[recipe.eval.ties],
        "ks": list(recipe.eval.ks),
        "metrics": "recall@K = hit@K (one target); ndcg@K = 1/log2(rank+1) if rank<=K; mrr@K = 1/rank if rank<=K",
    }


def evaluate_split(
    model: Model, data: SequenceDataset, windows: Windows, recipe: Any, device: torch.device
) -> tuple[dict[str, float], np.ndarray]:
    """Metrics and per-user ranks on one split (sharded over ranks under torchrun, then gathered)."""
    rank, world_size = world()
    ranks = rank_all(
        model,
        data,
        windows,
        recipe.eval.batch_size,
        recipe.eval.exclude_seen,
        recipe.eval.chunk_elements,
        recipe.eval.ties,
        (rank, world_size),
    )
    if world_size > 1:
        ranks = sum_over_ranks(ranks)
    return metrics_from_ranks(ranks, recipe.eval.ks), ranks


def _holding_the_run_lock(train: Callable[..., RunResult]) -> Callable[..., RunResult]:
    """Lock an existing run directory for the whole run (see :func:`eclsr.engine.rundir.locked`).

    A second process resuming or overwriting the same directory at the same time is then
    refused instead of interleaving epochs with this one. ``out_dir`` may be a ``str``.
    """

    @functools.wraps(train)
    def locked_run(recipe: Any, out_dir: Path | str | None = None, **options: Any) -> RunResult:
        out_dir = Path(out_dir) if out_dir is not None else None
        writer = out_dir if world()[0] == 0 else None
        with rundir.locked(writer if writer is not None and writer.is_dir() else None):
            return train(recipe, out_dir, **options)

    return locked_run


@_holding_the_run_lock
def run(
    recipe: Any,
    out_dir: Path | str | None = None,
    *,
    dataset: SequenceDataset | None = None,
    overwrite: bool = False,
    resume: bool = False,
    console: Console | None = None,
    progress: bool = True,
    command: str | None = None,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
) -> RunResult:
    """Train and evaluate the model a validated recipe describes.

    Args:
        recipe: a validated recipe (from :func:`eclsr.load_recipe` / :func:`eclsr.validate_recipe`).
        out_dir: run directory to write (locked while the run lasts); None writes nothing. Under
            torchrun only rank 0 writes.
        dataset: use this data instead of loading ``recipe.data``.
        overwrite: allow a non-empty ``out_dir``.
        resume: continue the run in ``out_dir`` from its newest good checkpoint.
        console: where progress and epoch lines go (default: stderr).
        progress: show a live progress bar.
        command: this process's command line: ``results.json`` records it as ``command`` for a
            new run; a resumed run keeps the command that started it (saved in its
            checkpoints) and adds this one to ``resumed_with``.
        on_epoch: called with ``(epoch, record)`` after each epoch is validated, logged and
            checkpointed (on every rank). It may raise to stop the run (``eclsr tune`` prunes a
            trial this way); the run directory then keeps that epoch's checkpoint, resumable.
    """
    console = console or Console(stderr=True, soft_wrap=True)
    train_cfg = recipe.train
    rank, world_size = world()
    writer = out_dir if rank == 0 else None
    if train_cfg.tensorboard:
        _require_tensorboard()  # before anything is written
    checkpoint = resume_checkpoint(out_dir, recipe) if resume else None
    if writer is not None and resume:
        rundir.remove_stale_temporaries(writer)  # a write killed mid-way; we hold the lock
    if writer is not None and checkpoint is None:
        if resume:  # killed before the first checkpoint: start over if nothing would be lost
            rundir.check_restart(writer)
        else:
            rundir.check_run_dir(writer, overwrite)  # fail before the (slow) data load
    setup = set_up_run(recipe, dataset if dataset is not None else load_data(recipe))
    model, data = setup.model, setup.data
    state = TrainState(stopper=EarlyStopping(train_cfg.patience))
    best_state = copy.deepcopy(model.state_dict())
    if checkpoint is not None:
        best_state = restore_state(
            checkpoint, out_dir, model, setup.optimizer, setup.generator, state
        )
        console.print(f"resuming {out_dir} at epoch {state.epoch} (stage {state.stage})")
        if command is not None:
            state.resumed_with.append(command)
    else:
        state.command = command
    if writer is not None:
        if checkpoint is None:  # a restart under --resume was checked to lose nothing
            rundir.prepare_run_dir(writer, overwrite or resume)
        _write_preamble(writer, recipe)
        _rewrite_metrics(writer, state.history)

    metric = train_cfg.monitor.split(".", 1)[1]
    board = _tensorboard(writer) if train_cfg.tensorboard else None
    stages = 2 if train_cfg.schedule.name == "two_stage" else 1
    started = time.perf_counter()
    code = rundir.code_version()  # now: the files may change while a long run trains
    # Float results depend on the CPU's vector kernels (AVX2 vs AVX-512): the same recipe and
    # seed reproduce bit for bit on the same kind of machine, closely on another.
    machine = rundir.machine_description()
    with _stop_on_signals() as stop:
        while True:
            if state.stage_epoch >= train_cfg.epochs or state.stopper.should_stop:
                if state.stage >= stages:
                    break
                best_state = _next_stage(model, best_state, state, train_cfg, console)
                setup.new_optimizer()
                continue
            record = train_one_epoch(setup, state, console, progress and rank == 0, stop)
            check_finite_parameters(model, state.epoch)  # NaN weights would score every target 1st
            eval_start = time.perf_counter()
            valid, _ = evaluate_split(model, data, setup.valid_windows, recipe, setup.device)
            record["valid"] = valid
            record["eval_seconds"] = round(time.perf_counter() - eval_start, 3)
            record["best"] = state.stopper.update(valid[metric], state.epoch)
            if record["best"]:
                best_state, state.best_valid = copy.deepcopy(model.state_dict()), valid
                if writer is not None:
                    rundir.save_state(
                        writer / rundir.BEST, {"model": best_state, "epoch": state.epoch}
                    )
            state.history.append(record)
            state.epoch += 1
            state.stage_epoch += 1
            if writer is not None:
                rundir.append_jsonl(writer / rundir.METRICS, record)
                save_checkpoint(
                    writer,
                    state.epoch,
                    checkpoint_state(
                        model,
                        setup.optimizer,
                        setup.generator,
                        replace(state, seconds_before=state.seconds_before + _since(started)),
                    ),
                )
            if rank == 0:  # one epoch line per run, not one per process
                _log_epoch(console, record, metric)
            if board is not None:
                _log_tensorboard(board, record)
            if on_epoch is not None:  # last: a raise leaves a consistent, resumable run directory
                on_epoch(record["epoch"], record)

    model.load_state_dict(best_state)
    test_windows, valid_windows, device = setup.test_windows, setup.valid_windows, setup.device
    test, test_ranks = evaluate_split(model, data, test_windows, recipe, device)
    _, valid_ranks = evaluate_split(model, data, valid_windows, recipe, device)
    popularity = popularity_ranks(
        model.item_counts.cpu(), data, test_windows, recipe.eval.exclude_seen, recipe.eval.ties
    )
    results = {
        "recipe": recipe.name,
        "seed": recipe.seed,
        "valid": state.best_valid or metrics_from_ranks(valid_ranks, recipe.eval.ks),
        "test": test,
        "popularity_test": metrics_from_ranks(popularity, recipe.eval.ks),
        "best_epoch": state.stopper.best_epoch,
        "epochs_run": state.epoch,
        "seconds": round(state.seconds_before + _since(started), 2),
        "device": str(device),
        "world_size": world_size,
        "protocol": protocol(recipe, data, setup.split),
        "code": code,
        "machine": machine,
    }
    if state.command is not None:
        results["command"] = state.command
    if state.resumed_with:
        results["resumed_with"] = state.resumed_with
    if writer is not None:
        if not (writer / rundir.BEST).is_file():  # no epoch ran (e.g. popularity): save the weights
            rundir.save_state(writer / rundir.BEST, {"model": best_state, "epoch": -1})
        np.savez_compressed(
            writer / "ranks.npz",
            users=test_windows.users,
            test=test_ranks,
            valid_users=valid_windows.users,
            valid=valid_ranks,
        )
        rundir.write_json(writer / rundir.RESULTS, results)
    return RunResult(results, model, writer, state.history)


def _next_stage(
    model: Model, best_state: dict[str, Any], state: TrainState, train_cfg: Any, console: Console
) -> dict[str, Any]:
    """Two-stage schedule: reload the best checkpoint, drop the listed heads, reset patience."""
    model.load_state_dict(best_state)
    state.stage += 1
    state.stage_epoch = 0
    state.stopper.bad_epochs = 0
    state.dropped = frozenset(train_cfg.schedule.drop)
    console.print(
        f"[bold]stage {state.stage}[/]: reloaded epoch {state.stopper.best_epoch}, dropped {sorted(state.dropped)}"
    )
    return best_state


def _tensorboard(out_dir: Path | None) -> Any:
    """A TensorBoard writer under ``run_dir/tb`` (rank 0 only); needs the optional extra."""
    if out_dir is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(out_dir / "tb"))


def _require_tensorboard() -> None:
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        msg = "train.tensorboard = true needs the tensorboard package: pip install 'eclsr[tensorboard]'."
        raise EclsrError(msg)


def _log_tensorboard(board: Any, record: dict[str, Any]) -> None:
    """Every loss term, the total and every validation metric of one epoch."""
    epoch = record["epoch"]
    board.add_scalar("loss/total", record["loss"], epoch)
    for name, value in record["losses"].items():
        board.add_scalar(f"loss/{name}", value, epoch)
    for name, value in record["valid"].items():
        board.add_scalar(f"valid/{name}", value, epoch)
    board.flush()


def _rewrite_metrics(out_dir: Path, history: list[dict[str, Any]]) -> None:
    """metrics.jsonl holds exactly the checkpointed epochs (lines of a lost epoch are dropped)."""
    text = "".join(json.dumps(record) + "\n" for record in history)
    rundir.atomic_write_bytes(out_dir / rundir.METRICS, text.encode())


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """SIGINT/SIGTERM set an event; the loop stops after the current step (checkpoints are per epoch)."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: object) -> None:
        stop.set()

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def load_data(recipe: Any) -> SequenceDataset:
    """Load the recipe's dataset through the data layer."""
    from eclsr.data import load_dataset

    return load_dataset(recipe.data)


def train_one_epoch(
    setup: RunSetup,
    state: TrainState,
    console: Console,
    show_progress: bool,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """One pass over the training windows; returns the epoch's log record (losses, timing)."""
    recipe, epoch = setup.recipe, state.epoch
    train_cfg = recipe.train
    setup.model.train()
    # A dropped head still serves others (a dropped generator still fills S''): run it frozen.
    frozen = train_cfg.schedule.frozen_heads(epoch) | state.dropped
    sums: dict[str, float] = defaultdict(float)
    steps = 0
    start = time.perf_counter()
    order = epoch_order(
        setup.windows, train_cfg.batch_size, recipe.seed, epoch, train_cfg.bucket_by_length
    )
    with _progress(console, show_progress) as bar:
        task = bar.add_task(f"epoch {epoch}", total=len(order), loss="")
        for rows in order:
            if stop is not None and stop.is_set():
                msg = f"interrupted during epoch {epoch}; the run directory keeps its last epoch checkpoint. Continue with --resume."
                raise RunInterrupted(msg)
            step = setup.make_step(rows, epoch, state.stage, frozen)
            losses, loss = setup.train_step(step, state.dropped)
            for name, (_, value) in losses.items():
                sums[name] += float(value.detach())
            sums["total"] += float(loss.detach())
            steps += 1
            bar.update(task, advance=1, loss=f"loss {sums['total'] / steps:.4f}")
    seconds = time.perf_counter() - start
    sums = mean_over_ranks(dict(sums))  # under torchrun: the global loss, not this rank's
    return {
        "epoch": epoch,
        "stage": state.stage,
        "loss": round(sums.pop("total", 0.0) / max(steps, 1), 6),
        "losses": {k: round(v / max(steps, 1), 6) for k, v in sums.items()},
        "train_seconds": round(seconds, 3),
        "positions_per_second": round(positions_per_epoch(setup.windows) / max(seconds, 1e-9), 1),
        "targets_per_second": round(targets_per_epoch(setup.windows) / max(seconds, 1e-9), 1),
    }


def _progress(console: Console, enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[loss]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not enabled,
    )


def _since(started: float) -> float:
    """Wall seconds since ``started`` (a ``time.perf_counter()`` reading)."""
    return time.perf_counter() - started


def _write_preamble(out_dir: Path, recipe: Any) -> None:
    from eclsr.registry.listing import plugin_rows

    rundir.write_recipe(out_dir / rundir.RECIPE, recipe)
    rundir.write_json(out_dir / rundir.PLUGINS, plugin_rows())


def _log_epoch(console: Console, record: dict[str, Any], metric: str) -> None:
    valid = record["valid"]
    star = " *" if record["best"] else ""
    console.print(
        f"epoch {record['epoch']:>3} stage {record['stage']} loss {record['loss']:.4f} "
        f"valid {metric} {valid[metric]:.4f} "
        f"({record['train_seconds']:.1f}s train, {record['eval_seconds']:.1f}s eval){star}",
        highlight=False,
    )
