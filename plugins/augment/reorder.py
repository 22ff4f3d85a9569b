"""Reorder: shuffle a random contiguous window of each sequence. Paper: ECL-SR §2.2 (after CL4SRec).

A window of ``max(1, floor(α·n))`` items (α = 0.2) at a uniformly random start is permuted
uniformly at random; everything outside it stays in place.
"""

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
    window_length,
)


class ReorderConfig(InvasiveAugmentationConfig):
    """Shuffle a random contiguous window of ``max(1, floor(ratio·n))`` items."""

    name: Literal["reorder"] = "reorder"
    ratio: float = Field(
        0.2,
        gt=0,
        le=1,
        description="α: fraction of each sequence shuffled; the window has max(1, floor(α·n)) "
        "items.",
    )

    def build(self, ctx: BuildContext) -> Reorder:
        """Return the runtime augmentation."""
        return Reorder(self.ratio)


class Reorder(InvasiveAugmentation):
    """Permutes a random contiguous window of every row.

    Lengths: unchanged (output trimmed to the longest row). Labels: ``replaced`` is ``None``;
    the window is a uniform random permutation, so some positions (or, for a window of one
    item, all) may keep their item. Vectorised by sorting random keys confined to the window.
    """

    def __init__(self, ratio: float) -> None:
        """Store α."""
        super().__init__()
        self.ratio = ratio

    def forward(self, step: Step, items: Tensor, lengths: Tensor) -> AugmentedBatch:
        """Reorder ``items [B, T]`` (right-padded, ``lengths [B]``)."""
        gen = step.generator
        size = window_length(lengths, self.ratio).unsqueeze(1)  # [B, 1]
        start = randint_below(gen, lengths - size.squeeze(1) + 1).unsqueeze(1)  # [B, 1]
        position = torch.arange(items.size(1), device=items.device).expand_as(items)  # [B, T]
        inside = (position >= start) & (position < start + size)  # [B, T]
        noise = torch.rand(items.shape, generator=gen, device=gen.device, dtype=torch.float64)
        # keys inside the window lie in [start, start + size): sorting permutes only the window
        keys = torch.where(inside, start + noise.to(items.device) * size, position.double())
        order = keys.argsort(dim=1, stable=True)  # [B, T]
        width = int(lengths.max())
        return AugmentedBatch(items.gather(1, order)[:, :width], lengths, None)


@hookimpl
def eclsr_register_augmentations(register: Callable[[type], None]) -> None:
    """Register reorder."""
    register(ReorderConfig)
