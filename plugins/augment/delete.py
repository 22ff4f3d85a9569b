"""Delete: remove a random item from each sequence, several times. Paper: ECL-SR §2.2."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
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


class DeleteConfig(InvasiveAugmentationConfig):
    """Delete one uniformly random real item per row, ``times`` times (never below length 1)."""

    name: Literal["delete"] = "delete"
    times: int = Field(
        2, ge=1, description="How many deletions per row (the paper repeats 'several times')."
    )

    def build(self, ctx: BuildContext) -> Delete:
        """Return the runtime augmentation."""
        return Delete(self.times)


class Delete(InvasiveAugmentation):
    """Deletes random items; later items shift left to close the gap.

    Lengths: each round removes one item from every row longer than 1, so row ``b`` ends at
    ``max(1, n_b - times)`` items (a row of length 1 is unchanged). The output is trimmed to the
    longest new row. Labels: ``replaced`` is ``None`` (the change is not positional).
    """

    def __init__(self, times: int) -> None:
        """Store the number of deletions."""
        super().__init__()
        self.times = times

    def forward(self, step: Step, items: Tensor, lengths: Tensor) -> AugmentedBatch:
        """Delete from ``items [B, T]`` (right-padded, ``lengths [B]``) → ``[B, T']``."""
        for _ in range(self.times):
            items, lengths = self._delete_one(step.generator, items, lengths)
        return AugmentedBatch(items[:, : int(lengths.max())], lengths, None)

    @staticmethod
    def _delete_one(gen: torch.Generator, items: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        width = items.size(1)
        allowed = (lengths > 1).unsqueeze(1)  # [B, 1]
        drop = randint_below(gen, lengths.clamp(min=1)).unsqueeze(1)  # [B, 1]
        column = torch.arange(width, device=items.device).unsqueeze(0)  # [1, T]
        index = (column + ((column >= drop) & allowed).long()).clamp(max=width - 1)  # [B, T]
        new_lengths = lengths - allowed.squeeze(1).long()  # [B]
        kept = items.gather(1, index).masked_fill(~real_mask(new_lengths, width), 0)  # [B, T]
        return kept, new_lengths


@hookimpl
def eclsr_register_augmentations(register: Callable[[type], None]) -> None:
    """Register delete."""
    register(DeleteConfig)
