"""RID head: L_RID, the conditional replaced-item discriminator.

Paper: Zhou et al., "Equivariant Contrastive Learning for Sequential Recommendation", Eq. 15.
For each real position t of the augmented sequence S'' the discriminator predicts whether the
item was replaced, conditioned on the UBE's hidden state h_t of the *original* sequence.

``condition = "add"`` (the authors' code, all four datasets): the discriminator *is* the UBE;
its input at t is ``E[v''_t] + h_t`` (``input_offset``), followed by one bias-free Linear D→1
(``bias = true`` adds a bias: a variant, not the code).
No detach: L_RID trains the UBE through the shared weights and through h.
``condition = "concat"`` (the paper): ``h''`` = the UBE over S'', then an MLP over
``[h''_t, h_t]`` (2D → D → 1, GELU).

Both need an augmentation that keeps positions aligned and labels them (``replaced``), such as
masked or random substitution; for crop, reorder, insert, delete use the ``aug_prediction`` head.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator
from torch import Tensor, nn

from eclsr.api import (
    AugmentedBatch,
    BuildContext,
    EclsrError,
    Head,
    HeadConfig,
    InvasiveAugmentationConfig,
    Step,
    StepShape,
    hookimpl,
)

if TYPE_CHECKING:
    from eclsr.api import InvasiveSlot


class RIDConfig(HeadConfig):
    """Replaced-item discrimination conditioned on the original sequence's states."""

    name: Literal["rid"] = "rid"
    augmentation: InvasiveSlot = Field(
        default_factory=lambda: {"name": "masked_substitution"},
        validate_default=True,
        description="Invasive augmentation that makes S'' and labels replaced positions "
        "(it must keep positions aligned).",
    )
    condition: Literal["add", "concat"] = Field(
        "add",
        description='"add" (code): UBE input E[v\'\'] + h, then Linear D→1. "concat" (paper): '
        "MLP over [UBE(S''), h], 2D → D → 1.",
    )

    bias: bool = Field(
        False,
        description='"add" only: give the Linear D→1 a bias, as ELECTRA-style discriminators '
        "have (the code's has none; the concat MLP always has biases).",
    )

    offset_scale: Literal["raw", "embedding"] = Field(
        "raw",
        description='"add" only: "raw" (the code) adds h_t as it is; "embedding" rescales each '
        "h_t to the norm of the item embedding it is added to. A trained UBE's post-LayerNorm "
        "states are ~30× the item embeddings' norm, so raw h_t swamps the item to be judged.",
    )

    average_over: Literal["positions", "epoch"] = Field(
        "positions",
        description="positions: mean BCE over the batch's real positions (paper and code). "
        "epoch: the sum divided by B × the epoch's mean positions per row, so a position weighs "
        "the same in every length-bucketed batch, as with random batches (see the next_item "
        "head's average_over).",
    )

    @model_validator(mode="after")
    def _add_only_options(self) -> RIDConfig:
        if self.condition == "add":
            return self
        settings = [
            text
            for text, is_set in (
                ("bias = true", self.bias),
                ('offset_scale = "embedding"', self.offset_scale != "raw"),
            )
            if is_set
        ]
        if settings:
            named = " and ".join(settings)
            msg = (
                f'{named} only work{"s" if len(settings) == 1 else ""} with condition = "add": '
                "they shape its single Linear D→1 and the state added to the UBE input, while "
                f'the "concat" MLP has its own biases and adds no state. Remove {named} or use '
                'condition = "add"'
            )
            raise ValueError(msg)
        return self

    @field_validator("augmentation")
    @classmethod
    def _labels_positions(
        cls, augmentation: InvasiveAugmentationConfig
    ) -> InvasiveAugmentationConfig:
        if not type(augmentation).positional_labels:
            msg = (
                f"rid needs an augmentation that keeps positions aligned and labels the replaced "
                f"ones; {augmentation.name!r} does not (positional_labels = False). Use a "
                "substitution (masked_substitution, random_substitution) here, or the "
                "aug_prediction head for this augmentation"
            )
            raise ValueError(msg)
        return augmentation

    def build(self, ctx: BuildContext) -> RIDHead:
        """Build the head, its augmentation and its output layer(s)."""
        return RIDHead(self, ctx)

    def train_flops(self, shape: StepShape) -> float | None:
        """Making S'', the discriminator's UBE pass over it (3×) and, for concat, its MLP."""
        augmentation = self.augmentation.train_flops(shape)
        if augmentation is None:
            return None
        total = augmentation + 3.0 * shape.ube_flops()
        if self.condition == "concat":
            d = shape.hidden
            total += 6.0 * shape.tokens * (2 * d * d + d)
        return total


class RIDHead(Head):
    """Mean BCE over the real positions of S'' against the ``replaced`` labels."""

    def __init__(self, config: RIDConfig, ctx: BuildContext) -> None:
        super().__init__()
        self.config = config
        self.augmentation = config.augmentation.build(ctx)
        d = ctx.hidden_size
        if config.condition == "add":
            self.classifier: nn.Module = nn.Linear(d, 1, bias=config.bias)
        else:
            self.classifier = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, 1))
        self.classifier.apply(_init_linear)

    def forward(self, step: Step) -> Tensor:
        """BCE-with-logits of the replaced/original prediction at every real position of S''."""
        batch = step.batch
        augmented = self.augmentation(step, batch.items, batch.lengths)
        self._check(augmented, batch.items, batch.lengths)
        real = batch.mask  # [B, T]; == real positions of S'' (aligned)
        original = step.hidden.masked_fill(~real.unsqueeze(-1), 0.0)  # [B, T, D]
        if self.config.condition == "add":
            if self.config.offset_scale == "embedding":
                original = to_embedding_norm(original, step.item_embedding(augmented.items))
            hidden = step.encoder(augmented.items, augmented.lengths, input_offset=original)
            features = hidden[real]  # [P, D]
        else:
            hidden = step.encoder(augmented.items, augmented.lengths)  # [B, T, D]
            features = torch.cat([hidden[real], original[real]], dim=-1)  # [P, 2D]
        logits = self.classifier(features).squeeze(-1)  # [P]
        assert augmented.replaced is not None
        labels = augmented.replaced[real].float()  # [P]
        loss = F.binary_cross_entropy_with_logits(logits.float(), labels)
        if self.config.average_over == "epoch":
            return step.epoch_mean(loss, labels.numel(), step.positions_per_row)
        return step.global_mean(loss, labels.numel())

    def _check(self, augmented: AugmentedBatch, items: Tensor, lengths: Tensor) -> None:
        name = self.config.augmentation.name
        if augmented.replaced is None:
            msg = (
                f"rid: augmentation {name!r} gives no per-position 'replaced' labels, so there "
                "is nothing to discriminate. Use a substitution (masked_substitution, "
                "random_substitution) here, or the aug_prediction head for this augmentation."
            )
            raise EclsrError(msg)
        if augmented.items.shape != items.shape or not torch.equal(augmented.lengths, lengths):
            msg = (
                f"rid: augmentation {name!r} moved positions (lengths or width changed), but the "
                "discriminator compares S'' with the original sequence position by position. "
                "Use a substitution here, or the aug_prediction head for this augmentation."
            )
            raise EclsrError(msg)


def to_embedding_norm(states: Tensor, embedded: Tensor) -> Tensor:
    """``states [B, T, D]`` rescaled, per position, to the norm of ``embedded [B, T, D]``.

    The factor carries no gradient: it sets the offset's size, while its direction still trains
    the UBE. Zero states (padding) stay zero.
    """
    with torch.no_grad():
        factor = embedded.norm(dim=-1, keepdim=True) / states.norm(dim=-1, keepdim=True).clamp(
            min=1e-6
        )
    return states * factor


def _init_linear(module: nn.Module) -> None:
    """N(0, 0.02) weights and zero biases, as the encoders."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


@hookimpl
def eclsr_register_heads(register: Callable[[type], None]) -> None:
    """Register the RID head."""
    register(RIDConfig)
