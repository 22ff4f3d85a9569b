"""The training loop: one readable function from a validated recipe to test metrics.

recipe → dataset → leave-one-out windows → model → epochs (train, validate, early stop) →
best checkpoint → test. Evaluation, checkpointing and logging are plain functions it calls.
"""

from __future__ import annotations

import copy
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from eclsr import rundir
from eclsr.batching import LeaveOneOut, Windows, iterate_training, positions_per_epoch
from eclsr.dataset import SequenceDataset
from eclsr.errors import EclsrError
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


def resolve_device(name: str) -> torch.device:
    """``auto`` → cuda when available, else cpu."""
    if name == "cuda" and not torch.cuda.is_available():
        msg = "train.device = 'cuda' but no CUDA device is available; use 'auto' or 'cpu'."
        raise EclsrError(msg)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
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


def protocol(recipe: Any, data: SequenceDataset, split: LeaveOneOut) -> dict[str, Any]:
    """Everything that decides what a metric means, recorded with every result."""
    return {
        "dataset": data.name,
        "dataset_sha256": data.source_hash,
        "preprocessing": data.protocol,
        "users": data.num_users,
        "items": data.num_items,
        "split": "leave_one_out (test = last item, valid = second last; test history includes valid item)",
        "max_len": split.max_len,
        "ranking": "full (all items; padding never ranked)",
        "exclude_seen": recipe.eval.exclude_seen,
        "ties": TIE_RULES[recipe.eval.ties],
        "ks": list(recipe.eval.ks),
        "metrics": "recall@K = hit@K (one target); ndcg@K = 1/log2(rank+1) if rank<=K; mrr@K = 1/rank if rank<=K",
    }


def evaluate_split(
    model: Model, data: SequenceDataset, windows: Windows, recipe: Any, device: torch.device
) -> tuple[dict[str, float], np.ndarray]:
    """Metrics and per-user ranks on one split."""
    ranks = rank_all(
        model,
        data,
        windows,
        recipe.train.eval_batch_size,
        recipe.eval.exclude_seen,
        recipe.eval.chunk_elements,
        recipe.eval.ties,
    )
    return metrics_from_ranks(ranks, recipe.eval.ks), ranks


def run(
    recipe: Any,
    out_dir: Path | None = None,
    *,
    dataset: SequenceDataset | None = None,
    overwrite: bool = False,
    console: Console | None = None,
    progress: bool = True,
) -> RunResult:
    """Train and evaluate the model a validated recipe describes.

    Args:
        recipe: a validated recipe (from :func:`eclsr.load_recipe` / :func:`eclsr.validate_recipe`).
        out_dir: run directory to write; None writes nothing.
        dataset: use this data instead of loading ``recipe.data``.
        overwrite: allow a non-empty ``out_dir``.
        console: where progress and epoch lines go (default: stderr).
        progress: show a live progress bar.
    """
    console = console or Console(stderr=True, soft_wrap=True)
    train_cfg = recipe.train
    if train_cfg.threads:
        torch.set_num_threads(train_cfg.threads)
    device = resolve_device(train_cfg.device)
    if out_dir is not None:
        rundir.prepare_run_dir(out_dir, overwrite)
    data = dataset if dataset is not None else load_data(recipe)
    split = LeaveOneOut(data, recipe.data.max_len)
    train_windows, valid_windows, test_windows = (
        split.train(),
        split.evaluation("valid"),
        split.evaluation("test"),
    )

    torch.manual_seed(recipe.seed)  # dropout masks and parameter init
    model = Model(recipe, data.num_items, training_item_counts(data)).to(device)
    if train_cfg.compile:
        model.encoder = torch.compile(model.encoder)  # type: ignore[assignment]
    step_generator = torch.Generator(device=device).manual_seed(recipe.seed)
    if out_dir is not None:
        _write_preamble(out_dir, recipe)

    metric = train_cfg.monitor.split(".", 1)[1]
    stopper = EarlyStopping(train_cfg.patience)
    best_state = copy.deepcopy(model.state_dict())
    best_valid: dict[str, float] = {}
    history: list[dict[str, Any]] = []
    stages = 2 if train_cfg.schedule.name == "two_stage" else 1
    dropped: frozenset[str] = frozenset()
    epoch = 0
    started = time.perf_counter()
    for stage in range(1, stages + 1):
        optimizer = make_optimizer(model, train_cfg)
        stopper.bad_epochs = 0
        for _ in range(train_cfg.epochs):
            record = train_one_epoch(
                model,
                optimizer,
                data,
                train_windows,
                recipe,
                epoch,
                stage,
                dropped,
                step_generator,
                device,
                console,
                progress,
            )
            eval_start = time.perf_counter()
            valid, _ = evaluate_split(model, data, valid_windows, recipe, device)
            record["valid"] = valid
            record["eval_seconds"] = round(time.perf_counter() - eval_start, 3)
            improved = stopper.update(valid[metric], epoch)
            record["best"] = improved
            if improved:
                best_state, best_valid = copy.deepcopy(model.state_dict()), valid
                if out_dir is not None:
                    rundir.save_state(out_dir / rundir.BEST, {"model": best_state, "epoch": epoch})
            history.append(record)
            _log_epoch(console, record, metric, out_dir)
            epoch += 1
            if stopper.should_stop:
                break
        if stage < stages:  # two-stage: reload the best checkpoint, drop heads, continue
            model.load_state_dict(best_state)
            dropped = frozenset(train_cfg.schedule.drop)
            console.print(
                f"[bold]stage 2[/]: reloaded epoch {stopper.best_epoch}, dropped {sorted(dropped)}"
            )

    model.load_state_dict(best_state)
    test, test_ranks = evaluate_split(model, data, test_windows, recipe, device)
    _, valid_ranks = evaluate_split(model, data, valid_windows, recipe, device)
    popularity = popularity_ranks(
        model_counts(model), data, test_windows, recipe.eval.exclude_seen, recipe.eval.ties
    )
    results = {
        "recipe": recipe.name,
        "seed": recipe.seed,
        "valid": best_valid or metrics_from_ranks(valid_ranks, recipe.eval.ks),
        "test": test,
        "popularity_test": metrics_from_ranks(popularity, recipe.eval.ks),
        "best_epoch": stopper.best_epoch,
        "epochs_run": epoch,
        "seconds": round(time.perf_counter() - started, 2),
        "device": str(device),
        "protocol": protocol(recipe, data, split),
    }
    if out_dir is not None:
        np.savez_compressed(
            out_dir / "ranks.npz", users=test_windows.users, test=test_ranks, valid=valid_ranks
        )
        rundir.write_json(out_dir / rundir.RESULTS, results)
    return RunResult(results, model, out_dir, history)


def model_counts(model: Model) -> torch.Tensor:
    """The training counts the model was built with (CPU)."""
    return model.item_counts.cpu()


def load_data(recipe: Any) -> SequenceDataset:
    """Load the recipe's dataset through the data layer."""
    from eclsr.datasets import load_dataset

    return load_dataset(recipe.data)


def train_one_epoch(
    model: Model,
    optimizer: torch.optim.Optimizer,
    data: SequenceDataset,
    windows: Windows,
    recipe: Any,
    epoch: int,
    stage: int,
    dropped: frozenset[str],
    generator: torch.Generator,
    device: torch.device,
    console: Console,
    show_progress: bool,
) -> dict[str, Any]:
    """One pass over the training users; returns the epoch's log record (losses, timing)."""
    train_cfg = recipe.train
    model.train()
    frozen = (train_cfg.schedule.name == "freeze_after" and epoch >= train_cfg.schedule.epochs) or (
        "generator" in dropped  # a dropped generator still feeds augmentations: run it without grad
    )
    sums: dict[str, float] = defaultdict(float)
    steps = 0
    start = time.perf_counter()
    batches = iterate_training(
        data, windows, train_cfg.batch_size, recipe.seed, epoch, train_cfg.bucket_by_length
    )
    total_batches = math.ceil(len(windows.users) / train_cfg.batch_size)
    with _progress(console, show_progress) as bar:
        task = bar.add_task(f"epoch {epoch}", total=total_batches, loss="")
        for batch in batches:
            step = Step(
                batch.to(device),
                model.encoder,
                model.item_embedding,
                model.num_items,
                generator,
                epoch=epoch,
                stage=stage,
                generator_frozen=frozen,
                services=model.services,
            )
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=train_cfg.amp == "bf16"):
                losses = model.losses(step, dropped)
            loss = total_loss(losses)
            _check_finite(losses, epoch)
            optimizer.zero_grad(set_to_none=True)
            if loss.requires_grad:
                loss.backward()
                if train_cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
                optimizer.step()
            for name, (_, value) in losses.items():
                sums[name] += float(value.detach())
            sums["total"] += float(loss.detach())
            steps += 1
            bar.update(task, advance=1, loss=f"loss {sums['total'] / steps:.4f}")
    seconds = time.perf_counter() - start
    return {
        "epoch": epoch,
        "stage": stage,
        "loss": round(sums.pop("total", 0.0) / max(steps, 1), 6),
        "losses": {k: round(v / max(steps, 1), 6) for k, v in sums.items()},
        "train_seconds": round(seconds, 3),
        "positions_per_second": round(positions_per_epoch(windows) / max(seconds, 1e-9), 1),
    }


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


def _log_epoch(console: Console, record: dict[str, Any], metric: str, out_dir: Path | None) -> None:
    if out_dir is not None:
        rundir.append_jsonl(out_dir / rundir.METRICS, record)
    valid = record["valid"]
    star = " *" if record["best"] else ""
    console.print(
        f"epoch {record['epoch']:>3} stage {record['stage']} loss {record['loss']:.4f} "
        f"valid {metric} {valid[metric]:.4f} "
        f"({record['train_seconds']:.1f}s train, {record['eval_seconds']:.1f}s eval){star}",
        highlight=False,
    )
