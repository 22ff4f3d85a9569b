"""Identity: the sequence unchanged. The "no augmentation" class for equivariance heads.

With ``aug_prediction`` over ``[identity, g]`` the head learns to tell whether ``g`` was applied
(ECL-SR Eq. 11 for a single non-positional invasive augmentation, as in the Table 5 cells).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
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


class IdentityConfig(InvasiveAugmentationConfig):
    """Leave the sequence as it is (every position labelled "original")."""

    positional_labels: ClassVar[bool] = True  # positions stay aligned; replaced is set
    name: Literal["identity"] = "identity"

    def build(self, ctx: BuildContext) -> Identity:
        """Return the runtime augmentation."""
        return Identity()


class Identity(InvasiveAugmentation):
    """Returns a copy of the batch; ``replaced`` is all False."""

    def forward(self, step: Step, items: Tensor, lengths: Tensor) -> AugmentedBatch:
        """``items [B, T]`` → the same items, lengths and an all-False ``replaced [B, T]``."""
        replaced = torch.zeros_like(real_mask(lengths, items.size(1)))
        return AugmentedBatch(items.clone(), lengths.clone(), replaced)


@hookimpl
def eclsr_register_augmentations(register: object) -> None:
    """Register the identity augmentation."""
    register(IdentityConfig)  # type: ignore[operator]
