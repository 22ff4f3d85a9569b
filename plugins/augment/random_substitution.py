"""Random substitution: replace a fraction of items with random items the user never had.

Paper: ECL-SR §2.2 ("substitution": replace a proportion, 0.2, of items with random
non-interacted items). "Non-interacted" is judged against the row itself (its real items).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Literal

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
    real_mask,
)

CEIL_SLACK = 1e-9  # so ceil(0.2 * 10) is 2, not 3, despite float rounding


class RandomSubstitutionConfig(InvasiveAugmentationConfig):
    """Replace ``ceil(ratio·n)`` random positions of each row with items not in that row."""

    positional_labels: ClassVar[bool] = True  # positions stay aligned; replaced is set
    name: Literal["random_substitution"] = "random_substitution"
    ratio: float = Field(
        0.2,
        gt=0,
        le=1,
        description="Fraction of each row's items replaced; the count is rounded up, so every "
        "row gets at least one substitution.",
    )
    attempts: int = Field(
        8,
        ge=1,
        description="Draws per position to find an item not in the row; a position whose "
        "draws all collide keeps its item (and is labelled not replaced).",
    )

    def build(self, ctx: BuildContext) -> RandomSubstitution:
        """Return the runtime augmentation."""
        return RandomSubstitution(self.ratio, self.attempts, ctx.num_items)


class RandomSubstitution(InvasiveAugmentation):
    """Substitutes random positions with uniformly random items absent from the row.

    Each row ``b`` gets ``ceil(ratio·n_b)`` distinct positions chosen uniformly among its real
    items. Each chosen position draws an item uniformly from 1..N, redrawing (up to ``attempts``
    draws in all) while the item occurs anywhere in the row's original items; if every draw
    collides (only likely when a row holds most of the catalogue) the position keeps its item.
    Two positions of a row may receive the same new item.

    Lengths: unchanged (output trimmed to the longest row). Labels: ``replaced`` is True exactly
    where the output item differs from the input item.
    """

    def __init__(self, ratio: float, attempts: int, num_items: int) -> None:
        """Store the ratio, the redraw budget and N."""
        super().__init__()
        self.ratio = ratio
        self.attempts = attempts
        self.num_items = num_items

    def forward(self, step: Step, items: Tensor, lengths: Tensor) -> AugmentedBatch:
        """Substitute in ``items [B, T]`` (right-padded, ``lengths [B]``)."""
        width = int(lengths.max())
        items, gen = items[:, :width], step.generator
        chosen = self._choose_positions(gen, items, lengths)  # [B, T]
        candidate, collides = self._draw_absent(gen, items)  # [B, T], [B, T]
        out = torch.where(chosen & ~collides, candidate, items)  # [B, T]
        return AugmentedBatch(out, lengths, out != items)

    def _choose_positions(self, gen: torch.Generator, items: Tensor, lengths: Tensor) -> Tensor:
        """``[B, T]`` bool: ``ceil(ratio·n)`` uniformly chosen real positions per row."""
        count = torch.ceil(lengths.double() * self.ratio - CEIL_SLACK).long().clamp(min=1)  # [B]
        keys = torch.rand(items.shape, generator=gen, device=gen.device).to(items.device)
        keys = keys.masked_fill(~real_mask(lengths, items.size(1)), 2.0)  # padding sorts last
        rank = keys.argsort(dim=1).argsort(dim=1)  # [B, T] rank of each position's key
        return rank < count.unsqueeze(1)

    def _draw_absent(self, gen: torch.Generator, items: Tensor) -> tuple[Tensor, Tensor]:
        """``[B, T]`` random items in 1..N and ``[B, T]`` bool: still occurs in the row."""
        history = items.sort(dim=1).values  # [B, T] for membership by binary search
        candidate = self._uniform_items(gen, items)
        collides = _occurs_in(candidate, history)
        for _ in range(self.attempts - 1):
            candidate = torch.where(collides, self._uniform_items(gen, items), candidate)
            collides = _occurs_in(candidate, history)
        return candidate, collides

    def _uniform_items(self, gen: torch.Generator, items: Tensor) -> Tensor:
        drawn = torch.randint(1, self.num_items + 1, items.shape, generator=gen, device=gen.device)
        return drawn.to(items.device)


def _occurs_in(candidate: Tensor, history: Tensor) -> Tensor:
    """``[B, T]`` bool: ``candidate[b, t]`` occurs in the sorted row ``history[b]``."""
    index = torch.searchsorted(history, candidate).clamp(max=history.size(1) - 1)  # [B, T]
    return history.gather(1, index) == candidate


@hookimpl
def eclsr_register_augmentations(register: Callable[[type], None]) -> None:
    """Register random substitution."""
    register(RandomSubstitutionConfig)
