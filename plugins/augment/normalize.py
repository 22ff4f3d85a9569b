"""Normalization view: scale each hidden state to unit L2 norm. Paper: ECL-SR Eq. 9."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch.nn.functional as F  # noqa: N812
from pydantic import Field
from torch import Tensor

from eclsr.api import BuildContext, MildAugmentation, MildAugmentationConfig, Step, hookimpl


class NormalizeConfig(MildAugmentationConfig):
    """The view ``h / ‖h‖₂`` per position."""

    name: Literal["normalize"] = "normalize"
    eps: float = Field(
        1e-12, gt=0, description="Floor on ‖h‖₂ so a zero state does not divide by zero."
    )

    def build(self, ctx: BuildContext) -> Normalize:
        """Return the runtime view."""
        return Normalize(self.eps)


class Normalize(MildAugmentation):
    """``h / max(‖h‖₂, eps)`` at every position (deterministic: draws no randomness)."""

    def __init__(self, eps: float) -> None:
        """Store the norm floor."""
        super().__init__()
        self.eps = eps

    def forward(self, step: Step, hidden: Tensor) -> Tensor:
        """Return ``[B, T, D]``: ``hidden`` scaled to unit norm along D."""
        return F.normalize(hidden, p=2.0, dim=-1, eps=self.eps)  # [B, T, D]


@hookimpl
def eclsr_register_augmentations(register: Callable[[type], None]) -> None:
    """Register the normalization view."""
    register(NormalizeConfig)
