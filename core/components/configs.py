"""Base classes of every component config, and the context their ``build`` receives.

A component is a frozen pydantic *config class* (what a recipe holds) whose ``build(ctx)``
returns the *runtime object* (an ``nn.Module`` or a callable). Config fields that hold another
component are annotated with one of the slot names below, written as strings
(``view: "MildSlot"``); eclsr resolves them to discriminated unions over whatever is registered
once the plugins are loaded, so a third-party augmentation is accepted in every slot of its kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

if TYPE_CHECKING:
    from eclsr.components.runtime import Encoder, Head, InvasiveAugmentation, MildAugmentation

#: Names usable in config annotations for nested components; resolved to discriminated unions
#: over the registered classes once plugins load. Import them under ``TYPE_CHECKING`` only.
SLOT_NAMES = ("EncoderSlot", "MildSlot", "InvasiveSlot", "AugmentationSlot")

Intensity = Literal["mild", "invasive"]


@dataclass(frozen=True)
class StepShape:
    """The shape of one training batch, for components' FLOP counts (``eclsr bench`` MFU).

    Attributes:
        lengths: ``[B]`` real positions per row (numpy).
        width: T, the batch's padded width.
        num_items: N.
        hidden: D.
        encoder: the UBE's config.
        heads: every head config of the recipe (a component may depend on another's settings).
        loss_targets: next-item loss terms in the batch; None = one per real position (prefix
            examples have one per row).
    """

    lengths: np.ndarray
    width: int
    num_items: int
    hidden: int
    encoder: EncoderConfig
    heads: tuple[HeadConfig, ...]
    loss_targets: float | None = None

    @property
    def tokens(self) -> float:
        """Real positions in the batch."""
        return float(self.lengths.sum())

    @property
    def targets(self) -> float:
        """Next-item loss terms in the batch."""
        return self.tokens if self.loss_targets is None else self.loss_targets

    def ube_flops(self) -> float:
        """Forward FLOPs of one full UBE pass over the batch (0 when the UBE has no formula)."""
        return self.encoder.forward_flops(self.tokens, self.width) or 0.0


class ComponentConfig(BaseModel):
    """Base of every registered config class.

    Subclasses declare ``name: Literal["their_name"] = "their_name"`` and a description and
    default for every field.
    """

    # allow_inf_nan=False: inf/nan pass `gt=0` and similar checks, then poison training.
    model_config = ConfigDict(
        frozen=True, extra="forbid", allow_inf_nan=False, protected_namespaces=()
    )
    kind: ClassVar[str] = "component"
    #: Services (e.g. ``"generator"``) this component needs some head of the recipe to provide.
    requires_services: ClassVar[tuple[str, ...]] = ()
    #: Services this component publishes into ``ctx.services`` when built.
    provides_services: ClassVar[tuple[str, ...]] = ()

    def needed_services(self) -> tuple[str, ...]:
        """Services this configured component needs; override when that depends on a field."""
        return self.requires_services

    def build(self, ctx: BuildContext) -> Any:
        """Return the runtime object this config describes."""
        msg = f"{type(self).__qualname__} must implement build(ctx)"
        raise NotImplementedError(msg)


class EncoderConfig(ComponentConfig):
    """Config of a user-behaviour encoder; ``build`` returns an :class:`Encoder`."""

    kind: ClassVar[str] = "encoder"
    hidden: int | None = Field(
        None,
        gt=0,
        description="Hidden size D. None: 64 for the UBE; for an encoder built by a head (e.g. "
        "the generator's), the UBE's size, since they share the item table.",
    )

    def hidden_size(self, default: int = 64) -> int:
        """The hidden size, ``default`` when unset."""
        return self.hidden if self.hidden is not None else default

    def forward_flops(
        self, tokens: float, width: int, queries: float | None = None
    ) -> float | None:
        """Forward FLOPs over ``tokens`` real tokens in rows of ``width`` (optional; for MFU).

        ``queries``: how many states are actually asked for (``Encoder.encode_at``), when an
        encoder can skip work for the rest. None (the default) means "no formula": ``eclsr
        bench`` then reports no FLOPs or MFU for recipes using this encoder.
        """
        return None

    def build(self, ctx: BuildContext) -> Encoder:  # noqa: D102
        return super().build(ctx)


class AugmentationConfig(ComponentConfig):
    """Config of an augmentation; ``intensity`` says whether it is mild or invasive."""

    kind: ClassVar[str] = "augmentation"
    intensity: ClassVar[Intensity]

    def train_flops(self, shape: StepShape) -> float | None:
        """FLOPs this augmentation adds to a training step (forward + backward; optional).

        The default, 0, fits augmentations that only edit ids or rescale vectors; one that runs a
        model (the generator-filled substitution) overrides it. None means "no formula".
        """
        return 0.0


class MildAugmentationConfig(AugmentationConfig):
    """Feature-level augmentation: ``build`` returns a :class:`MildAugmentation`."""

    intensity: ClassVar[Intensity] = "mild"

    def build(self, ctx: BuildContext) -> MildAugmentation:  # noqa: D102
        return super().build(ctx)


class InvasiveAugmentationConfig(AugmentationConfig):
    """Sequence-level augmentation: ``build`` returns an :class:`InvasiveAugmentation`."""

    intensity: ClassVar[Intensity] = "invasive"
    #: True when positions stay aligned (same lengths) and ``AugmentedBatch.replaced`` labels
    #: each position whose item changed; False when the change is not positional (crop, insert,
    #: delete: ``replaced`` is None). Heads that discriminate positions (``rid``) need True, and
    #: ``eclsr validate`` rejects a recipe that pairs them with an augmentation that says False.
    positional_labels: ClassVar[bool] = False

    def build(self, ctx: BuildContext) -> InvasiveAugmentation:  # noqa: D102
        return super().build(ctx)


class HeadConfig(ComponentConfig):
    """Config of a head (an objective). Every head has a loss weight."""

    kind: ClassVar[str] = "head"
    weight: float = Field(1.0, ge=0.0, description="Weight of this head's loss in the total loss.")

    def train_flops(self, shape: StepShape) -> float | None:
        """FLOPs this head adds to a training step, forward + backward (optional; for MFU).

        Count what the head computes beyond the UBE's first pass (which core counts): its own
        projections and losses, extra encoder passes (3× their forward where gradients flow).
        None (the default) means "no formula": ``eclsr bench`` then reports no MFU.
        """
        return None

    def build(self, ctx: BuildContext) -> Head:  # noqa: D102
        return super().build(ctx)


# --------------------------------------------------------------------------- build context


@dataclass
class BuildContext:
    """What a config's ``build`` may use.

    Attributes:
        num_items: N; ids run 1..N, 0 is padding and N+1 is [MASK].
        max_len: maximum sequence length L.
        item_embedding: the item table shared by every module, ``[N+2, D]``.
        hidden_size: D.
        encoder: the UBE (``None`` while the UBE itself is being built).
        item_counts: ``[N+1]`` training-interaction counts per item (index 0 unused).
        services: modules published by heads for other components (e.g. ``"generator"``).
    """

    num_items: int
    max_len: int
    item_embedding: nn.Embedding
    hidden_size: int
    encoder: Encoder | None = None
    item_counts: Tensor = field(default_factory=lambda: torch.zeros(0))
    services: dict[str, nn.Module] = field(default_factory=dict)

    @property
    def mask_token(self) -> int:
        """Id of the [MASK] token (N+1)."""
        return self.num_items + 1


if TYPE_CHECKING:  # what the slot names stand for, for type checkers
    EncoderSlot = EncoderConfig
    MildSlot = MildAugmentationConfig
    InvasiveSlot = InvasiveAugmentationConfig
    AugmentationSlot = AugmentationConfig
