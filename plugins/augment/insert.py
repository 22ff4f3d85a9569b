"""Insert: put items from other users' histories at random positions. Paper: ECL-SR §2.2.

Each round inserts, at a uniformly random slot of every row (before any item or after the
last), one item drawn uniformly from the real items of the *other* rows of the batch (the
original batch, so an item never comes back to the row it was taken from).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F  # noqa: N812
from pydantic import Field
from torch import Tensor

from eclsr.api import (
    AugmentedBatch,
    BuildContext,
    InvasiveAugmentation,
    InvasiveAugmentationConfig,
    Step,
    hookimpl,
    randint_below,
    real_mask,
)


class InsertConfig(InvasiveAugmentationConfig):
    """Insert an item from another user's history into each row, ``times`` times."""

    name: Literal["insert"] = "insert"
    times: int = Field(
        2, ge=1, description="How many insertions per row (the paper repeats 'several times')."
    )

    def build(self, ctx: BuildContext) -> Insert:
        """Return the runtime augmentation."""
        return Insert(self.times, ctx.max_len)


class Insert(InvasiveAugmentation):
    """Inserts foreign items at random positions.

    Lengths: each round adds one item to every row; a row that would exceed ``max_len`` drops
    its oldest item instead (keeping the most recent, like the data pipeline), so row ``b`` ends
    at ``min(n_b + times, max_len)`` items. The output may be wider than the input (up to
    ``max_len``). Labels: ``replaced`` is ``None`` (positions shift, so no per-position label).
    The item is drawn from the other rows' real items; a batch of one row draws from itself.
    """

    def __init__(self, times: int, max_len: int) -> None:
        """Store the number of insertions and the length cap."""
        super().__init__()
        self.times = times
        self.max_len = max_len

    def forward(self, step: Step, items: Tensor, lengths: Tensor) -> AugmentedBatch:
        """Insert into ``items [B, T]`` (right-padded, ``lengths [B]``) → ``[B, T']``."""
        gen = step.generator
        foreign = foreign_items(gen, items, lengths, self.times)  # [times, B]
        for new in foreign:
            items, lengths = self._insert_one(gen, items, lengths, new)
        return AugmentedBatch(items[:, : int(lengths.max())], lengths, None)

    def _insert_one(
        self, gen: torch.Generator, items: Tensor, lengths: Tensor, new: Tensor
    ) -> tuple[Tensor, Tensor]:
        slot = randint_below(gen, lengths + 1).unsqueeze(1)  # [B, 1] in 0..n
        column = torch.arange(items.size(1) + 1, device=items.device).unsqueeze(0)  # [1, T+1]
        index = (column - (column > slot).long()).clamp(min=0)  # [B, T+1]
        grown = F.pad(items, (0, 1)).gather(1, index).scatter(1, slot, new.unsqueeze(1))
        return _keep_recent(grown, lengths + 1, self.max_len)


def foreign_items(gen: torch.Generator, items: Tensor, lengths: Tensor, rounds: int) -> Tensor:
    """``[rounds, B]`` items drawn uniformly from the real items of the other rows of the batch.

    A row whose batch has no other real item (a batch of one row) draws from its own items.
    """
    pool = items[real_mask(lengths, items.size(1))]  # [M], row-major: row b's items are contiguous
    offsets = lengths.cumsum(0) - lengths  # [B] start of each row's segment in the pool
    others = pool.numel() - lengths  # [B]
    alone = others == 0
    upper = torch.where(alone, lengths, others).clamp(min=1).expand(rounds, -1)  # [rounds, B]
    r = randint_below(gen, upper)  # [rounds, B]
    index = torch.where(alone, offsets + r, r + (r >= offsets).long() * lengths)  # skip own row
    return pool[index]


def _keep_recent(items: Tensor, lengths: Tensor, max_len: int) -> tuple[Tensor, Tensor]:
    """Drop the oldest items of rows longer than ``max_len``; zero the padding; trim the width."""
    excess = (lengths - max_len).clamp(min=0).unsqueeze(1)  # [B, 1]
    column = torch.arange(items.size(1), device=items.device).unsqueeze(0)  # [1, T]
    shifted = items.gather(1, (column + excess).clamp(max=items.size(1) - 1))  # [B, T]
    lengths = lengths.clamp(max=max_len)
    width = int(lengths.max())
    return shifted.masked_fill(~real_mask(lengths, items.size(1)), 0)[:, :width], lengths


@hookimpl
def eclsr_register_augmentations(register: Callable[[type], None]) -> None:
    """Register insert."""
    register(InsertConfig)
