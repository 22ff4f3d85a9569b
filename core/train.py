"""The training loop: one readable function from a validated recipe to test metrics.

recipe → dataset → leave-one-out windows → model → epochs (train, validate, early stop) →
best checkpoint → test. Evaluation, checkpointing and logging are plain functions it calls.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from eclsr import rundir
from eclsr.allocator import tune_allocator
from eclsr.batching import (
    LeaveOneOut,
    TimeSplit,
    Windows,
    epoch_order,
    make_batch,
    make_split,
    positions_per_epoch,
    targets_per_epoch,
    training_examples,
)
from eclsr.checkpoint import (
    EarlyStopping,
    TrainState,
    checkpoint_state,
    restore_state,
    resume_checkpoint,
    save_checkpoint,
)
from eclsr.dataset import SequenceDataset
from eclsr.distributed import sum_over_ranks, world
from eclsr.errors import EclsrError, RunInterrupted
from eclsr.evaluate import TIE_RULES, metrics_from_ranks, popularity_ranks, rank_all
from eclsr.model import Model, total_loss
from eclsr.step import Step


@dataclass
class RunResult:
    """What :func:`run` returns."""

    results: dict[str, Any]
    model: Model
    run_dir: Path | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def resolve_device(name: str, rank: int = 0) -> torch.device:
    """``auto`` → cuda when available, else cpu; under torchrun each rank takes its local GPU."""
    if name == "cuda" and not torch.cuda.is_available():
        msg = "train.device = 'cuda' but no CUDA device is available; use 'auto' or 'cpu'."
        raise EclsrError(msg)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device(name)


def training_item_counts(data: SequenceDataset) -> torch.Tensor:
    """``[N+1]`` interactions per item in the training part (all but each user's last two)."""
    position = np.arange(len(data.items)) - np.repeat(data.offsets[:-1], data.lengths)
    in_train = position < np.repeat(data.lengths - 2, data.lengths)
    counts = np.bincount(data.items[in_train], minlength=data.num_items + 1)
    return torch.from_numpy(counts.astype(np.float32))


def make_optimizer(model: Model, train: Any) -> torch.optim.Optimizer:
    """Adam or AdamW over every trainable parameter."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        return torch.optim.SGD(
            [torch.nn.Parameter(torch.zeros(1))], lr=train.lr
        )  # parameter-free (pop)
    if train.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)
    return torch.optim.Adam(params, lr=train.lr, weight_decay=train.weight_decay)


SPLIT_TEXT = {
    "LeaveOneOut": "leave_one_out (test = last item, valid = second last; test history includes valid item)",
    "TimeSplit": "time (train = before the first cut-off; valid/test = each user's first item after each cut-off, with its full earlier history)",
}


def epoch_examples(recipe: Any, data: SequenceDataset, split: LeaveOneOut | TimeSplit) -> Windows:
    """The training rows ``recipe.train.examples`` asks for (the same rows every epoch)."""
    examples = recipe.train.examples
    return training_examples(data, split.train(), examples.mode, split.max_len, examples.min_length)


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
        recipe.train.eval_batch_size,
        recipe.eval.exclude_seen,
        recipe.eval.chunk_elements,
        recipe.eval.ties,
        (rank, world_size),
    )
    if world_size > 1:
        ranks = sum_over_ranks(ranks)
    return metrics_from_ranks(ranks, recipe.eval.ks), ranks


def run(
    recipe: Any,
    out_dir: Path | None = None,
    *,
    dataset: SequenceDataset | None = None,
    overwrite: bool = False,
    resume: bool = False,
    console: Console | None = None,
    progress: bool = True,
    command: str | None = None,
) -> RunResult:
    """Train and evaluate the model a validated recipe describes.

    Args:
        recipe: a validated recipe (from :func:`eclsr.load_recipe` / :func:`eclsr.validate_recipe`).
        out_dir: run directory to write; None writes nothing. Under torchrun only rank 0 writes.
        dataset: use this data instead of loading ``recipe.data``.
        overwrite: allow a non-empty ``out_dir``.
        resume: continue the run in ``out_dir`` from its newest good checkpoint.
        console: where progress and epoch lines go (default: stderr).
        progress: show a live progress bar.
        command: the command line that started the run, recorded in ``results.json``.
    """
    console = console or Console(stderr=True, soft_wrap=True)
    train_cfg = recipe.train
    rank, world_size = world()
    writer = out_dir if rank == 0 else None
    if train_cfg.threads:
        torch.set_num_threads(train_cfg.threads)
    if train_cfg.tune_allocator:
        tune_allocator()
    device = resolve_device(train_cfg.device, rank)
    if train_cfg.tensorboard:
        _require_tensorboard()  # before anything is written
    checkpoint = resume_checkpoint(out_dir, recipe) if resume else None
    if writer is not None and checkpoint is None:
        rundir.check_run_dir(writer, overwrite)  # fail before the (slow) data load
    data = dataset if dataset is not None else load_data(recipe)
    split = make_split(data, recipe.data.max_len)
    train_windows, valid_windows, test_windows = (
        epoch_examples(recipe, data, split),
        split.evaluation("valid"),
        split.evaluation("test"),
    )

    torch.manual_seed(recipe.seed)  # parameter init: identical on every rank
    model = Model(recipe, data.num_items, training_item_counts(data)).to(device)
    torch.manual_seed(recipe.seed + rank)  # dropout masks: independent per rank
    if train_cfg.compile:
        model.encoder = torch.compile(model.encoder)  # type: ignore[assignment]
    step_generator = torch.Generator(device=device).manual_seed(recipe.seed + rank)
    trainer: torch.nn.Module = model
    if world_size > 1:
        trainer = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    optimizer = make_optimizer(model, train_cfg)
    state = TrainState(stopper=EarlyStopping(train_cfg.patience))
    best_state = copy.deepcopy(model.state_dict())
    if checkpoint is not None:
        best_state = restore_state(checkpoint, out_dir, model, optimizer, step_generator, state)
        console.print(f"resuming {out_dir} at epoch {state.epoch} (stage {state.stage})")
    if writer is not None:
        if checkpoint is None:
            rundir.prepare_run_dir(writer, overwrite)
        _write_preamble(writer, recipe)
        _rewrite_metrics(writer, state.history)

    metric = train_cfg.monitor.split(".", 1)[1]
    board = _tensorboard(writer) if train_cfg.tensorboard else None
    stages = 2 if train_cfg.schedule.name == "two_stage" else 1
    started = time.perf_counter()
    with _stop_on_signals() as stop:
        while True:
            if state.stage_epoch >= train_cfg.epochs or state.stopper.should_stop:
                if state.stage >= stages:
                    break
                best_state = _next_stage(model, best_state, state, train_cfg, console)
                optimizer = make_optimizer(model, train_cfg)
                continue
            shard = Shard(rank, world_size)
            record = train_one_epoch(
                trainer,
                model,
                optimizer,
                data,
                train_windows,
                recipe,
                state,
                step_generator,
                device,
                console,
                progress,
                shard,
                stop,
            )
            eval_start = time.perf_counter()
            valid, _ = evaluate_split(model, data, valid_windows, recipe, device)
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
                    writer, state.epoch, checkpoint_state(model, optimizer, step_generator, state)
                )
            _log_epoch(console, record, metric)
            if board is not None:
                _log_tensorboard(board, record)

    model.load_state_dict(best_state)
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
        "seconds": round(time.perf_counter() - started, 2),
        "device": str(device),
        "world_size": world_size,
        "protocol": protocol(recipe, data, split),
    }
    if command is not None:
        results["command"] = command
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
    from eclsr.datasets import load_dataset

    return load_dataset(recipe.data)


@dataclass(frozen=True)
class Shard:
    """Which slice of every global batch this process trains on."""

    rank: int = 0
    world_size: int = 1

    def take(self, rows: np.ndarray) -> np.ndarray:
        """This rank's contiguous part of a global batch (sizes differ by at most one)."""
        if self.world_size == 1:
            return rows
        return np.array_split(rows, self.world_size)[self.rank]


def train_one_epoch(
    trainer: torch.nn.Module,
    model: Model,
    optimizer: torch.optim.Optimizer,
    data: SequenceDataset,
    windows: Windows,
    recipe: Any,
    state: TrainState,
    generator: torch.Generator,
    device: torch.device,
    console: Console,
    show_progress: bool,
    shard: Shard = Shard(),
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """One pass over the training users; returns the epoch's log record (losses, timing).

    ``trainer`` is the model itself, or its DistributedDataParallel wrapper under torchrun.
    """
    train_cfg = recipe.train
    model.train()
    epoch = state.epoch
    frozen = (train_cfg.schedule.name == "freeze_after" and epoch >= train_cfg.schedule.epochs) or (
        "generator"
        in state.dropped  # a dropped generator still feeds augmentations: run it without grad
    )
    sums: dict[str, float] = defaultdict(float)
    steps = 0
    start = time.perf_counter()
    order = epoch_order(
        windows, train_cfg.batch_size, recipe.seed, epoch, train_cfg.bucket_by_length
    )
    with _progress(console, show_progress) as bar:
        task = bar.add_task(f"epoch {epoch}", total=len(order), loss="")
        for rows in order:
            if stop is not None and stop.is_set():
                msg = f"interrupted during epoch {epoch}; the run directory keeps its last epoch checkpoint. Continue with --resume."
                raise RunInterrupted(msg)
            batch = make_batch(data, windows, shard.take(rows)).to(device)
            step = Step(
                batch, model.encoder, model.item_embedding, model.num_items, generator,
                epoch=epoch, stage=state.stage, generator_frozen=frozen, services=model.services,
                rank=shard.rank, world_size=shard.world_size,
            )  # fmt: skip
            losses, loss = train_step(trainer, model, optimizer, step, state.dropped, train_cfg)
            for name, (_, value) in losses.items():
                sums[name] += float(value.detach())
            sums["total"] += float(loss.detach())
            steps += 1
            bar.update(task, advance=1, loss=f"loss {sums['total'] / steps:.4f}")
    seconds = time.perf_counter() - start
    return {
        "epoch": epoch,
        "stage": state.stage,
        "loss": round(sums.pop("total", 0.0) / max(steps, 1), 6),
        "losses": {k: round(v / max(steps, 1), 6) for k, v in sums.items()},
        "train_seconds": round(seconds, 3),
        "positions_per_second": round(positions_per_epoch(windows) / max(seconds, 1e-9), 1),
        "targets_per_second": round(targets_per_epoch(windows) / max(seconds, 1e-9), 1),
    }


def train_step(
    trainer: torch.nn.Module,
    model: Model,
    optimizer: torch.optim.Optimizer,
    step: Step,
    dropped: frozenset[str],
    train_cfg: Any,
) -> tuple[dict[str, tuple[float, torch.Tensor]], torch.Tensor]:
    """One optimisation step: losses, finiteness check, backward, clipping, update."""
    device_type = step.batch.items.device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=train_cfg.amp == "bf16"):
        losses = trainer(step, dropped)
    loss = total_loss(losses)
    _check_finite(losses, step.epoch)
    optimizer.zero_grad(set_to_none=True)
    if loss.requires_grad:
        loss.backward()
        if train_cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
        optimizer.step()
    return losses, loss


def _check_finite(losses: dict[str, tuple[float, torch.Tensor]], epoch: int) -> None:
    for name, (_, value) in losses.items():
        if not torch.isfinite(value.detach()).all():
            msg = (
                f"the {name!r} loss became {float(value.detach())} at epoch {epoch}. Training stopped; the "
                f"best checkpoint so far is kept. Lower train.lr, set train.grad_clip, or check the data."
            )
            raise EclsrError(msg)


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


def _write_preamble(out_dir: Path, recipe: Any) -> None:
    import yaml

    from eclsr.plugin_listing import plugin_rows

    text = yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
    rundir.atomic_write_bytes(out_dir / rundir.RECIPE, text.encode())
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
