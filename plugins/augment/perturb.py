"""Perturbation view: add a small, h-shaped random offset of fixed norm. Paper: ECL-SR Eq. 7–8.

``Δ = Δ̂ ⊙ h`` with ``Δ̂ ~ U(0, 1)^D`` drawn per position, rescaled so ``‖Δ‖₂ = ε`` at every
position; the view is ``h + Δ``. Gradients flow through ``h`` (both terms), as the equation reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from eclsr.api import BuildContext, MildAugmentation, MildAugmentationConfig, Step, hookimpl

NORM_FLOOR = 1e-12  # keeps the rescaling finite where h is (numerically) zero


class PerturbConfig(MildAugmentationConfig):
    """Random perturbation ``h + Δ`` with ``‖Δ‖₂ = eps`` per position."""

    name: Literal["perturb"] = "perturb"
    eps: float = Field(0.1, gt=0, description="ε: L2 norm of the offset Δ at every position.")

    def build(self, ctx: BuildContext) -> Perturb:
        """Return the runtime view."""
        return Perturb(self.eps)


class Perturb(MildAugmentation):
    """``h + ε · (Δ̂ ⊙ h) / ‖Δ̂ ⊙ h‖₂`` with ``Δ̂ ~ U(0, 1)^D`` from ``step.generator``."""

    def __init__(self, eps: float) -> None:
        """Store ε."""
        super().__init__()
        self.eps = eps

    def forward(self, step: Step, hidden: Tensor) -> Tensor:
        """Return ``[B, T, D]``: ``hidden`` plus an offset of norm ε at each position."""
        gen = step.generator
        noise = torch.rand(hidden.shape, generator=gen, device=gen.device)  # [B, T, D]
        delta = noise.to(device=hidden.device, dtype=hidden.dtype) * hidden  # [B, T, D]
        norm = delta.norm(dim=-1, keepdim=True).clamp_min(NORM_FLOOR)  # [B, T, 1]
        return hidden + self.eps * delta / norm  # [B, T, D]


@hookimpl
def eclsr_register_augmentations(register: Callable[[type], None]) -> None:
    """Register the perturbation view."""
    register(PerturbConfig)
