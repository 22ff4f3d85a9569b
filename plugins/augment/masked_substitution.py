"""Masked substitution: generator-filled S'' (the default invasive augmentation of ECL-SR).

Paper: Zhou et al., "Equivariant Contrastive Learning for Sequential Recommendation", §2.2 and
Eq. 15. A fraction γ of the real positions is masked, the generator (the ``generator`` head's
service) predicts an item there by argmax, and S'' takes that prediction. As in ELECTRA and the
authors' code, a position counts as *replaced* only when the item actually changed (a correct
prediction is labelled "original"), the original item is not excluded from the argmax, and no
gradient flows through the argmax. Lengths are unchanged, so positions stay aligned.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

from pydantic import Field
from torch import Tensor

from eclsr.api import (
    AugmentedBatch,
    BuildContext,
    EclsrError,
    InvasiveAugmentation,
    InvasiveAugmentationConfig,
    Step,
    StepShape,
    hookimpl,
    real_mask,
)


class MaskedSubstitutionConfig(InvasiveAugmentationConfig):
    """Replace masked positions by the generator's argmax prediction."""

    positional_labels: ClassVar[bool] = True  # positions stay aligned; replaced is set
    name: Literal["masked_substitution"] = "masked_substitution"
    requires_services: ClassVar[tuple[str, ...]] = ("generator",)
    mask_ratio: float = Field(
        0.2, gt=0.0, lt=1.0, description="γ: probability that each real position is masked."
    )

    def build(self, ctx: BuildContext) -> MaskedSubstitution:
        """Build the augmentation (the generator is looked up per step)."""
        return MaskedSubstitution(self)

    def train_flops(self, shape: StepShape) -> float:
        """Nothing when the generator's own loss pass at this γ fills S'', else that pass."""
        generators = [h for h in shape.heads if "generator" in h.provides_services]
        if any(
            h.weight > 0 and getattr(h, "mask_ratio", None) == self.mask_ratio for h in generators
        ):
            return 0.0  # the pass is memoised and S'' reuses the loss's argmax
        fill = getattr(generators[0], "fill_flops", None) if generators else None
        return fill(shape, self.mask_ratio) if fill is not None else 0.0


class MaskedSubstitution(InvasiveAugmentation):
    """S'' = the generator's predictions at masked positions, the original items elsewhere."""

    def __init__(self, config: MaskedSubstitutionConfig) -> None:
        super().__init__()
        self.config = config

    def forward(self, step: Step, items: Tensor, lengths: Tensor) -> AugmentedBatch:
        """Fill a γ fraction of the real positions of ``items`` with generator predictions."""
        out = _generator(step).generate(step, self.config.mask_ratio, items, lengths)
        filled = out.predictions.detach()  # [B, T]
        replaced = (filled != items) & real_mask(lengths, items.size(1))  # [B, T]
        return AugmentedBatch(items=filled, lengths=lengths, replaced=replaced)


def _generator(step: Step) -> Any:
    generator = step.services.get("generator")
    if generator is None:
        msg = (
            "masked_substitution needs the 'generator' service, but no head provides it. "
            'Add a generator head to the recipe: [[heads]] name = "generator" (weight = 0 '
            "keeps it untrained)."
        )
        raise EclsrError(msg)
    return generator


@hookimpl
def eclsr_register_augmentations(register: Callable[[type], None]) -> None:
    """Register masked substitution."""
    register(MaskedSubstitutionConfig)
