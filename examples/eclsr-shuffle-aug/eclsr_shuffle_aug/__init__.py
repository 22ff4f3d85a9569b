"""Shuffle: permute every real item of each sequence. Paper: CL4SRec's "reorder" with α = 1.

Xie et al., "Contrastive Learning for Sequential Recommendation" (ICDE 2022) reorders a window
of α·n items; this augmentation is the extreme α = 1: every real item of a row is moved to a
uniformly random real position, padding stays where it is. Lengths are unchanged, so positions
stay aligned and ``replaced`` marks the positions whose item changed (a fixed point of the
permutation, or a repeated item landing on its twin, counts as original) — which makes
``shuffle`` usable both as a CL4SRec view and as the augmentation of the ``rid`` head.

An example of a third-party eclsr plugin: it imports only the public ``eclsr`` API and is found
through its ``[project.entry-points.eclsr]`` entry, exactly like a built-in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Literal

import torch
from torch import Tensor

import eclsr
from eclsr import (
    AugmentedBatch,
    BuildContext,
    InvasiveAugmentation,
    InvasiveAugmentationConfig,
    Step,
    real_mask,
)

__version__ = "0.1.0"


class ShuffleConfig(InvasiveAugmentationConfig):
    """Shuffle all real items of each sequence (CL4SRec reorder with α = 1)."""

    positional_labels: ClassVar[bool] = True  # positions stay aligned; replaced is set
    name: Literal["shuffle"] = "shuffle"

    def build(self, ctx: BuildContext) -> Shuffle:
        """Return the runtime augmentation."""
        return Shuffle()


class Shuffle(InvasiveAugmentation):
    """Uniform random permutation of the real items of every row, vectorised over the batch.

    Each real position gets a uniform key in [0, 1), each padding position the key ``1 + t``;
    a row-wise argsort then permutes the real items among themselves and keeps padding last.
    """

    def forward(self, step: Step, items: Tensor, lengths: Tensor) -> AugmentedBatch:
        """Shuffle ``items [B, T]`` (right-padded, ``lengths [B]``); lengths are unchanged."""
        gen = step.generator
        real = real_mask(lengths, items.size(1))  # [B, T]
        noise = torch.rand(items.shape, generator=gen, device=gen.device)  # [B, T]
        position = torch.arange(items.size(1), device=items.device).expand_as(items)  # [B, T]
        keys = torch.where(real, noise.to(items.device), 1.0 + position)  # [B, T]
        shuffled = items.gather(1, keys.argsort(dim=1))  # [B, T]
        replaced = (shuffled != items) & real  # [B, T]
        return AugmentedBatch(items=shuffled, lengths=lengths, replaced=replaced)


@eclsr.hookimpl
def eclsr_register_augmentations(register: Callable[[type], None]) -> None:
    """Register shuffle."""
    register(ShuffleConfig)
