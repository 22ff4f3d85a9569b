"""Dropout view: a second stochastic pass of the UBE. Paper: ECL-SR §2.2 (mild), as in DuoRec.

The default mild augmentation of ECL-SR (and the unsupervised view of DuoRec): the positive view is
simply the encoder run again on the same batch, so its dropout masks differ from the first pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from torch import Tensor

from eclsr.api import BuildContext, MildAugmentation, MildAugmentationConfig, Step, hookimpl


class DropoutViewConfig(MildAugmentationConfig):
    """A second UBE pass with fresh dropout masks (needs the encoder in train mode)."""

    name: Literal["dropout"] = "dropout"

    def build(self, ctx: BuildContext) -> DropoutView:
        """Return the runtime view."""
        return DropoutView()


class DropoutView(MildAugmentation):
    """Re-encodes ``step.batch``; the first pass ``hidden`` is ignored.

    In eval mode (no dropout) the view equals the first pass, so the contrastive loss is trivial.
    Gradients flow through the encoder on both passes.
    """

    def forward(self, step: Step, hidden: Tensor) -> Tensor:
        """Return ``[B, T, D]``: the UBE's hidden states from a fresh stochastic pass."""
        return step.encoder(step.batch.items, step.batch.lengths)  # [B, T, D]

    def view_at(self, step: Step, hidden: Tensor, positions: Tensor) -> Tensor:
        """``[B, K, D]``: the fresh pass at ``positions`` only (the encoder may skip the rest)."""
        return step.encoder.encode_at(step.batch.items, step.batch.lengths, positions)


@hookimpl
def eclsr_register_augmentations(register: Callable[[type], None]) -> None:
    """Register the dropout view."""
    register(DropoutViewConfig)
