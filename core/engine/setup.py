"""One set-up for every way of training: ``run()``, ``eclsr bench`` and the tools.

:func:`set_up_run` turns a validated recipe (and its data) into a :class:`RunSetup`: the split
and its windows, the model with its seeded initialisation, the optimizer, the step generator and,
under torchrun, the DDP wrapper. :meth:`RunSetup.train_step` is the one optimisation step they all
run, so a benchmark times exactly what a run trains.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from eclsr.components.step import Step
from eclsr.data.batching import make_batch, positions_per_epoch, targets_per_epoch
from eclsr.data.examples import training_examples
from eclsr.data.sequences import SequenceDataset
from eclsr.data.splits import LeaveOneOut, TimeSplit, Windows, make_split
from eclsr.engine.allocator import tune_allocator
from eclsr.engine.distributed import resolve_device, world
from eclsr.engine.model import Model, total_loss
from eclsr.errors import EclsrError

Losses = dict[str, tuple[float, torch.Tensor]]


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


@dataclass
class RunSetup:
    """Everything a training step needs, built once by :func:`set_up_run`.

    Attributes:
        recipe: the validated recipe.
        data: the dataset.
        split: the evaluation split (leave-one-out or time-based).
        windows: training windows; ``valid_windows`` / ``test_windows`` the evaluation ones.
        model: the model (its ``encoder`` may be compiled).
        trainer: ``model``, or its DistributedDataParallel wrapper under torchrun.
        optimizer: Adam/AdamW over the trainable parameters.
        generator: the seeded generator every component draws from.
        device: where the model lives.
        shard: this process's rank and the world size.
    """

    recipe: Any
    data: SequenceDataset
    split: LeaveOneOut | TimeSplit
    windows: Windows
    valid_windows: Windows
    test_windows: Windows
    model: Model
    trainer: torch.nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    device: torch.device
    shard: Shard

    def make_step(
        self, rows: np.ndarray, epoch: int = 0, stage: int = 1, frozen: frozenset[str] = frozenset()
    ) -> Step:
        """The :class:`Step` of window ``rows`` (this rank's share of them) on the device."""
        model = self.model
        batch = make_batch(self.data, self.windows, self.shard.take(rows)).to(self.device)
        return Step(
            batch, model.encoder, model.item_embedding, model.num_items, self.generator,
            epoch=epoch, stage=stage, frozen=frozen, services=model.services,
            rank=self.shard.rank, world_size=self.shard.world_size,
            targets_per_row=self.targets_per_row, positions_per_row=self.positions_per_row,
        )  # fmt: skip

    @functools.cached_property
    def targets_per_row(self) -> float:
        """Next-item targets per training row, averaged over the epoch (1 for prefix rows)."""
        return targets_per_epoch(self.windows) / max(len(self.windows.users), 1)

    @functools.cached_property
    def positions_per_row(self) -> float:
        """Real input positions per training row, averaged over the epoch."""
        return positions_per_epoch(self.windows) / max(len(self.windows.users), 1)

    def train_step(
        self, step: Step, dropped: frozenset[str] = frozenset()
    ) -> tuple[Losses, torch.Tensor]:
        """One optimisation step on ``step``; returns every loss term and the total."""
        return train_step(
            self.trainer, self.model, self.optimizer, step, dropped, self.recipe.train
        )

    def new_optimizer(self) -> None:
        """A fresh optimizer (a new training stage starts without the old moments)."""
        self.optimizer = make_optimizer(self.model, self.recipe.train)


def set_up_run(recipe: Any, data: SequenceDataset) -> RunSetup:
    """Build the run a recipe describes on ``data``: threads, device, split, model, optimizer.

    Parameter initialisation draws from ``torch.manual_seed(seed)`` (identical on every rank);
    dropout masks and the step generator from ``seed + rank`` (independent per rank).
    """
    train = recipe.train
    rank, world_size = world()
    if train.threads:
        torch.set_num_threads(train.threads)
    if train.tune_allocator:
        tune_allocator()
    device = resolve_device(train.device)
    split = make_split(data, recipe.data.max_len)
    torch.manual_seed(recipe.seed)
    check_model_memory(recipe, data.num_items, device)
    with allocation_error(recipe, data.num_items):
        model = Model(recipe, data.num_items, training_item_counts(data)).to(device)
    torch.manual_seed(recipe.seed + rank)
    if train.compile:
        model.encoder = torch.compile(model.encoder)  # type: ignore[assignment]
    trainer: torch.nn.Module = model
    if world_size > 1:
        trainer = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    return RunSetup(
        recipe=recipe,
        data=data,
        split=split,
        windows=epoch_examples(recipe, data, split),
        valid_windows=split.evaluation("valid"),
        test_windows=split.evaluation("test"),
        model=model,
        trainer=trainer,
        optimizer=make_optimizer(model, train),
        generator=torch.Generator(device=device).manual_seed(recipe.seed + rank),
        device=device,
        shard=Shard(rank, world_size),
    )


def epoch_examples(recipe: Any, data: SequenceDataset, split: LeaveOneOut | TimeSplit) -> Windows:
    """The training rows ``recipe.train.examples`` asks for (the same rows every epoch)."""
    examples = recipe.train.examples
    return training_examples(data, split.train(), examples.mode, split.max_len, examples.min_length)


def training_item_counts(data: SequenceDataset) -> torch.Tensor:
    """``[N+1]`` interactions per item in the training part (all but each user's last two)."""
    position = np.arange(len(data.items)) - np.repeat(data.offsets[:-1], data.lengths)
    in_train = position < np.repeat(data.lengths - 2, data.lengths)
    counts = np.bincount(data.items[in_train], minlength=data.num_items + 1)
    return torch.from_numpy(counts.astype(np.float32))


def make_optimizer(model: Model, train: Any) -> torch.optim.Optimizer:
    """Adam or AdamW over every trainable parameter."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:  # parameter-free (pop): a dummy the loop can step
        return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=train.lr)
    if train.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)
    return torch.optim.Adam(params, lr=train.lr, weight_decay=train.weight_decay)


def train_step(
    trainer: torch.nn.Module,
    model: Model,
    optimizer: torch.optim.Optimizer,
    step: Step,
    dropped: frozenset[str],
    train_cfg: Any,
) -> tuple[Losses, torch.Tensor]:
    """One optimisation step: losses, finiteness check, backward, clipping, update."""
    device_type = step.batch.items.device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=train_cfg.amp == "bf16"):
        losses = trainer(step, dropped)
    loss = total_loss(losses)
    check_finite(losses, step.epoch)
    optimizer.zero_grad(set_to_none=True)
    if loss.requires_grad:
        loss.backward()
        if train_cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
        optimizer.step()
    return losses, loss


def check_finite(losses: Losses, epoch: int) -> None:
    """Raise, naming the term, when a loss is not finite."""
    for name, (_, value) in losses.items():
        if not torch.isfinite(value.detach()).all():
            msg = (
                f"the {name!r} loss became {float(value.detach())} at epoch {epoch}. Training stopped; the "
                f"best checkpoint so far is kept. Lower train.lr, set train.grad_clip, or check the data."
            )
            raise EclsrError(msg)


def check_finite_parameters(model: torch.nn.Module, epoch: int) -> None:
    """Raise, naming the first parameter, when a weight is NaN or infinite after ``epoch``.

    A loss can stay finite while the update it drives overflows the weights; such a model scores
    every item NaN, which would rank every target first, so it is never evaluated or kept.
    """
    named = list(model.named_parameters())
    if not named:
        return
    finite = torch.stack([torch.isfinite(p.detach()).all() for _, p in named])  # one sync below
    if bool(finite.all()):
        return
    for (name, _), ok in zip(named, finite.tolist(), strict=True):
        if not ok:
            msg = (
                f"parameter {name!r} became non-finite (NaN or inf) during epoch {epoch}, although "
                "every loss was finite. Training stopped; the best checkpoint so far is kept. "
                "Lower train.lr or set train.grad_clip."
            )
            raise EclsrError(msg)


#: Bytes per parameter while training: fp32 weight, gradient and Adam's two moments.
TRAIN_BYTES_PER_PARAM = 16


def estimate_model_bytes(recipe: Any, num_items: int) -> int:
    """A lower bound of the training memory of the recipe's model, computed before allocating.

    Counts the item table ((N+2) × hidden) and each encoder block (attention 4·D² and the
    feed-forward 2·D·inner) at :data:`TRAIN_BYTES_PER_PARAM` bytes each; the real model only
    adds to it, so a recipe refused by this estimate could never have trained.
    """
    encoder = recipe.encoder
    hidden = int(getattr(encoder, "hidden", None) or 64)
    layers = int(getattr(encoder, "layers", 1) or 1)
    inner = int(getattr(encoder, "inner_size", hidden) or hidden)
    params = (num_items + 2) * hidden + layers * (4 * hidden * hidden + 2 * hidden * inner)
    return params * TRAIN_BYTES_PER_PARAM


def device_memory(device: torch.device) -> int | None:
    """Total memory of ``device`` in bytes (None when unknown)."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.mem_get_info(device)[1])
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, RuntimeError, AttributeError):
        return None


def _gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB"


def check_model_memory(recipe: Any, num_items: int, device: torch.device) -> None:
    """Refuse, with the estimate, a model that cannot fit in the device's memory at all."""
    need, have = estimate_model_bytes(recipe, num_items), device_memory(device)
    if have is not None and need > have:
        msg = (
            f"the model needs at least {_gib(need)} to train ({num_items} items × encoder.hidden "
            f"{getattr(recipe.encoder, 'hidden', None)}, weights + gradients + Adam state), but "
            f"{device} has {_gib(have)} in all. Lower encoder.hidden, encoder.inner_size or "
            "encoder.layers, or filter rare items (data.k_core)."
        )
        raise EclsrError(msg)


@contextlib.contextmanager
def allocation_error(recipe: Any, num_items: int) -> Iterator[None]:
    """Turn an allocator failure while building the model into a located error with the estimate."""
    try:
        yield
    except (MemoryError, RuntimeError) as exc:
        text = str(exc)
        if not isinstance(exc, MemoryError) and "memory" not in text.lower():
            raise
        need = _gib(estimate_model_bytes(recipe, num_items))
        msg = (
            f"building the model ran out of memory (it needs at least {need}; {text.splitlines()[0][:160] if text else 'MemoryError'}). "
            "Lower encoder.hidden, encoder.inner_size or encoder.layers, or use a larger machine."
        )
        raise EclsrError(msg) from None
