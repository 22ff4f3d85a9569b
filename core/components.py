"""Base classes every component derives from: frozen configs and their runtime objects.

A component is a frozen pydantic *config class* (what a recipe holds) whose ``build(ctx)``
returns the *runtime object* (an ``nn.Module`` or a callable). Config fields that hold another
component are annotated with one of the slot names below, written as strings
(``view: "MildSlot"``); eclsr resolves them to discriminated unions over whatever is registered
once the plugins are loaded, so a third-party augmentation is accepted in every slot of its kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

if TYPE_CHECKING:
    from eclsr.step import Step

#: Names usable in config annotations for nested components; resolved to discriminated unions
#: over the registered classes once plugins load. Import them under ``TYPE_CHECKING`` only.
SLOT_NAMES = ("EncoderSlot", "MildSlot", "InvasiveSlot", "AugmentationSlot")

Intensity = Literal["mild", "invasive"]


class ComponentConfig(BaseModel):
    """Base of every registered config class.

    Subclasses declare ``name: Literal["their_name"] = "their_name"`` and a description and
    default for every field.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())
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

    def build(self, ctx: BuildContext) -> Encoder:  # noqa: D102
        return super().build(ctx)


class AugmentationConfig(ComponentConfig):
    """Config of an augmentation; ``intensity`` says whether it is mild or invasive."""

    kind: ClassVar[str] = "augmentation"
    intensity: ClassVar[Intensity]


class MildAugmentationConfig(AugmentationConfig):
    """Feature-level augmentation: ``build`` returns a :class:`MildAugmentation`."""

    intensity: ClassVar[Intensity] = "mild"

    def build(self, ctx: BuildContext) -> MildAugmentation:  # noqa: D102
        return super().build(ctx)


class InvasiveAugmentationConfig(AugmentationConfig):
    """Sequence-level augmentation: ``build`` returns an :class:`InvasiveAugmentation`."""

    intensity: ClassVar[Intensity] = "invasive"

    def build(self, ctx: BuildContext) -> InvasiveAugmentation:  # noqa: D102
        return super().build(ctx)


class HeadConfig(ComponentConfig):
    """Config of a head (an objective). Every head has a loss weight."""

    kind: ClassVar[str] = "head"
    weight: float = Field(1.0, ge=0.0, description="Weight of this head's loss in the total loss.")

    def build(self, ctx: BuildContext) -> Head:  # noqa: D102
        return super().build(ctx)


# --------------------------------------------------------------------------- runtime objects


class Encoder(nn.Module):
    """Maps right-padded item sequences to hidden states.

    Item ids run 1..N, 0 is padding, N+1 is the [MASK] token. Sequences are right-padded:
    row b holds ``lengths[b]`` real items followed by zeros, oldest first.
    """

    hidden_size: int

    def forward(self, items: Tensor, lengths: Tensor, input_offset: Tensor | None = None) -> Tensor:
        """Encode a batch.

        Args:
            items: ``[B, T]`` item ids, right-padded with 0.
            lengths: ``[B]`` number of real items per row.
            input_offset: optional ``[B, T, D]`` added to the item embeddings before the
                position embedding (the RID head's ``add`` conditioning).

        Returns:
            ``[B, T, D]`` hidden states; values at padding positions are unspecified.
        """
        raise NotImplementedError

    def encode_at(self, items: Tensor, lengths: Tensor, positions: Tensor) -> Tensor:
        """The hidden states at some positions only: ``[B, K, D]``, row b at ``positions[b]``.

        Must equal ``gather_positions(self(items, lengths), positions)`` up to dropout draws.
        This default does exactly that; an encoder that can skip work for the positions nobody
        asked for overrides it (the transformer encoders run their last block's queries only
        at ``positions``), which is what the dropout view, the generator and ranking call.

        Args:
            items: ``[B, T]`` item ids, right-padded with 0.
            lengths: ``[B]`` number of real items per row.
            positions: ``[B, K]`` indices into ``T`` (any valid index where a slot is unused).
        """
        return gather_positions(self(items, lengths), positions)

    def user_vectors(self, items: Tensor, lengths: Tensor) -> Tensor:
        """``[B, D]`` representation used for ranking: the hidden state at the last real item."""
        last = (lengths - 1).clamp(min=0).unsqueeze(1)  # [B, 1]
        return self.encode_at(items, lengths, last).squeeze(1)  # [B, D]

    def item_vectors(self, item_embedding: nn.Embedding, num_items: int) -> Tensor:
        """``[N+1, D]`` vectors scored against user vectors (row 0 is padding, never ranked)."""
        return item_embedding.weight[: num_items + 1]


class MildAugmentation(nn.Module):
    """Produces a positive view of the UBE's hidden states."""

    def forward(self, step: Step, hidden: Tensor) -> Tensor:
        """Return ``[B, T, D]``: a view of ``hidden`` (the UBE's first pass over ``step.batch``)."""
        raise NotImplementedError

    def view_at(self, step: Step, hidden: Tensor, positions: Tensor) -> Tensor:
        """The view at some positions only, ``[B, K, D]`` (``positions`` as in ``Encoder.encode_at``).

        A consumer that needs only a few positions (InfoNCE pools the last k) calls this. The
        default gathers from :meth:`forward`; a view that re-encodes the batch overrides it to
        let the encoder skip the rest.
        """
        return gather_positions(self(step, hidden), positions)


@dataclass
class AugmentedBatch:
    """An invasively augmented batch of sequences and what changed.

    Attributes:
        items: ``[B, T']`` right-padded item ids.
        lengths: ``[B]`` real lengths (1 <= length <= max_len).
        replaced: ``[B, T']`` bool, True where the item differs from the original at that
            position; ``None`` when the change is not positional (crop, reorder, insert, ...).
    """

    items: Tensor
    lengths: Tensor
    replaced: Tensor | None = None


class InvasiveAugmentation(nn.Module):
    """Rewrites item sequences (insert, delete, substitute, crop, reorder, ...)."""

    def forward(self, step: Step, items: Tensor, lengths: Tensor) -> AugmentedBatch:
        """Augment a batch. Randomness comes from ``step.generator`` only."""
        raise NotImplementedError


class Head(nn.Module):
    """An objective. ``forward`` returns its unweighted loss (or several named ones)."""

    def forward(self, step: Step) -> Tensor | dict[str, Tensor]:
        """Compute the loss on ``step.batch``; may reuse ``step.hidden`` and ``step.memo``."""
        raise NotImplementedError


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


def last_position(hidden: Tensor, lengths: Tensor) -> Tensor:
    """Gather ``hidden[b, lengths[b]-1]`` → ``[B, D]``."""
    index = (lengths - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, hidden.size(-1))
    return hidden.gather(1, index).squeeze(1)


def gather_positions(hidden: Tensor, positions: Tensor) -> Tensor:
    """``hidden[b, positions[b, k]]`` → ``[B, K, D]``."""
    index = positions.unsqueeze(-1).expand(-1, -1, hidden.size(-1))  # [B, K, D]
    return hidden.gather(1, index)


def selected_positions(selected: Tensor) -> tuple[Tensor, Tensor]:
    """The True positions of each row of ``selected [B, T]``, left-aligned and padded.

    Returns ``positions [B, K]`` (K = most True in a row; ascending within a row) and
    ``valid [B, K]``, so ``x[valid]`` after gathering ``positions`` lists the same rows, in the
    same order, as ``x[selected]`` on the full ``[B, T, ...]`` tensor. Unused slots hold some
    position of the row (harmless to compute, dropped by ``valid``).
    """
    counts = selected.sum(dim=1)  # [B]
    width = int(counts.max()) if counts.numel() else 0
    # A stable sort of "not selected" puts the selected positions first, in their order.
    order = torch.sort((~selected).to(torch.uint8), dim=1, stable=True).indices[:, :width]
    valid = torch.arange(width, device=selected.device).unsqueeze(0) < counts.unsqueeze(1)
    return order, valid


def last_k_positions(lengths: Tensor, k: int, width: int) -> tuple[Tensor, Tensor]:
    """The last ``min(k, length)`` real positions of each right-padded row.

    Returns ``positions [B, K]`` with K = min(k, width) and ``valid [B, K]`` (False where a row
    has fewer than K items; those slots point at real or padding positions inside the row).
    """
    size = min(k, width)
    start = (lengths - size).clamp(min=0)  # [B]
    positions = start.unsqueeze(1) + torch.arange(size, device=lengths.device)  # [B, K]
    return positions, positions < lengths.unsqueeze(1)


def real_mask(lengths: Tensor, width: int) -> Tensor:
    """``[B, T]`` bool, True at real (non-padding) positions of right-padded rows."""
    return torch.arange(width, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


if TYPE_CHECKING:  # what the slot names stand for, for type checkers
    EncoderSlot = EncoderConfig
    MildSlot = MildAugmentationConfig
    InvasiveSlot = InvasiveAugmentationConfig
    AugmentationSlot = AugmentationConfig
