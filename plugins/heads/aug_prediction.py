"""Augmentation-prediction head: equivariance to augmentations without per-position labels.

Paper: Zhou et al., "Equivariant Contrastive Learning for Sequential Recommendation", Eq. 11:
for invasive augmentations that are not substitutions (crop, reorder, insert, delete) the
equivariance objective is a prediction head φ that identifies which augmentation g was applied.

Every augmentation in ``augmentations`` is applied to the whole batch (K draws, one per
augmentation); the K augmented batches are padded to a common width and encoded by the UBE in
one pass; each is represented by its state at its last real position. Conditioned on the
original sequence (``condition = "concat"``, as RID's paper variant) an MLP over
``[h_aug, h_orig]`` (2D → D → K, GELU) classifies which of the K augmentations made it; the loss
is the mean cross-entropy over the K·B augmented sequences. ``condition = "none"`` uses a
Linear D → K on ``h_aug`` alone. Gradients train the UBE through both representations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from eclsr.api import BuildContext, Head, HeadConfig, Step, hookimpl, last_position

if TYPE_CHECKING:
    from eclsr.api import InvasiveSlot


def _default_augmentations() -> list[dict[str, str]]:
    return [{"name": n} for n in ("crop", "reorder", "insert", "delete")]


class AugPredictionConfig(HeadConfig):
    """Classify which invasive augmentation produced a sequence (Eq. 11)."""

    name: Literal["aug_prediction"] = "aug_prediction"
    augmentations: list[InvasiveSlot] = Field(
        default_factory=_default_augmentations,
        validate_default=True,
        min_length=2,
        description="The K >= 2 invasive augmentations to tell apart (the classes, in order).",
    )
    condition: Literal["concat", "none"] = Field(
        "concat",
        description='"concat": MLP over [h_aug, h_orig] (2D → D → K). "none": Linear D → K '
        "over h_aug only.",
    )

    def build(self, ctx: BuildContext) -> AugPredictionHead:
        """Build the head, its augmentations and its classifier."""
        return AugPredictionHead(self, ctx)


class AugPredictionHead(Head):
    """Mean CE of the augmentation identity over the K·B augmented sequences."""

    def __init__(self, config: AugPredictionConfig, ctx: BuildContext) -> None:
        super().__init__()
        self.config = config
        self.augmentations = nn.ModuleList(a.build(ctx) for a in config.augmentations)
        d, k = ctx.hidden_size, len(config.augmentations)
        if config.condition == "concat":
            self.classifier: nn.Module = nn.Sequential(
                nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, k)
            )
        else:
            self.classifier = nn.Linear(d, k)
        for module in self.classifier.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, step: Step) -> Tensor:
        """CE of the classifier's guess of which augmentation made each sequence."""
        items, lengths = self._augment_all(step)  # [K·B, W], [K·B]
        hidden = step.encoder(items, lengths)  # [K·B, W, D]
        features = last_position(hidden, lengths)  # [K·B, D]
        count = len(self.augmentations)
        if self.config.condition == "concat":
            original = last_position(step.hidden, step.batch.lengths)  # [B, D]
            features = torch.cat([features, original.repeat(count, 1)], dim=-1)  # [K·B, 2D]
        logits = self.classifier(features)  # [K·B, K]
        batch_size = step.batch.lengths.size(0)
        labels = torch.arange(count, device=logits.device).repeat_interleave(batch_size)
        return step.global_mean(F.cross_entropy(logits.float(), labels), labels.numel())

    def _augment_all(self, step: Step) -> tuple[Tensor, Tensor]:
        """Apply each augmentation to the batch; stack the results padded to a common width."""
        batch = step.batch
        outputs = [aug(step, batch.items, batch.lengths) for aug in self.augmentations]
        width = max(out.items.size(1) for out in outputs)
        items = torch.cat([F.pad(out.items, (0, width - out.items.size(1))) for out in outputs])
        lengths = torch.cat([out.lengths for out in outputs])
        return items, lengths


@hookimpl
def eclsr_register_heads(register: Callable[[type], None]) -> None:
    """Register the augmentation-prediction head."""
    register(AugPredictionConfig)
