"""Crop: keep a random contiguous window of each sequence. Paper: ECL-SR §2.2 (after CL4SRec).

The paper's cropped length is ``l_c = α·|S|`` (α = 0.8); we keep a contiguous window of
``max(1, floor(α·n))`` items starting at a uniformly random offset.
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
    real_mask,
    window_length,
)


class CropConfig(InvasiveAugmentationConfig):
    """Keep a random contiguous sub-sequence of ``max(1, floor(ratio·n))`` items."""

    name: Literal["crop"] = "crop"
    ratio: float = Field(
        0.8,
        gt=0,
        le=1,
        description="α: fraction of each sequence kept; the window has max(1, floor(α·n)) items.",
    )

    def build(self, ctx: BuildContext) -> Crop:
        """Return the runtime augmentation."""
        return Crop(self.ratio)


class Crop(InvasiveAugmentation):
    """Crops every row to a random contiguous window.

    Lengths: row ``b`` becomes ``max(1, floor(ratio·n_b))`` long (never longer, never 0; a row of
    length 1 is unchanged). The window keeps its order and moves to position 0; the output is
    trimmed to the longest new row. Labels: ``replaced`` is ``None`` (the change is not
    positional). Input rows must have at least one item.
    """

    def __init__(self, ratio: float) -> None:
        """Store α."""
        super().__init__()
        self.ratio = ratio

    def forward(self, step: Step, items: Tensor, lengths: Tensor) -> AugmentedBatch:
        """Crop ``items [B, T]`` (right-padded, ``lengths [B]``) to ``[B, T']``."""
        keep = window_length(lengths, self.ratio)  # [B]
        start = randint_below(step.generator, lengths - keep + 1)  # [B]
        width = int(keep.max())
        offsets = torch.arange(width, device=items.device)  # [T']
        index = (start.unsqueeze(1) + offsets).clamp(max=items.size(1) - 1)  # [B, T']
        cropped = items.gather(1, index).masked_fill(~real_mask(keep, width), 0)  # [B, T']
        return AugmentedBatch(cropped, keep, None)


@hookimpl
def eclsr_register_augmentations(register: Callable[[type], None]) -> None:
    """Register crop."""
    register(CropConfig)
