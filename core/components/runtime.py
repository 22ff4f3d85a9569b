"""The runtime objects that component configs build: encoders, augmentations and heads.

Each is an ``nn.Module`` whose ``forward`` signature is the contract core relies on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor, nn

from eclsr.errors import EclsrError
from eclsr.ops.positions import gather_positions

if TYPE_CHECKING:
    from eclsr.components.step import Step


class Encoder(nn.Module):
    """Maps right-padded item sequences to hidden states.

    Item ids run 1..N, 0 is padding, N+1 is the [MASK] token. Sequences are right-padded:
    row b holds ``lengths[b]`` real items followed by zeros, oldest first.
    """

    hidden_size: int

    def share_item_table(self, table: nn.Embedding) -> None:
        """Use the model's item table ``[N+2, D]`` (``ctx.item_embedding``) without owning it.

        The table belongs to the model and is shared by every module, so an encoder must not
        register it as its submodule. Held through this method, the table appears once in the
        model's ``state_dict``, the encoder's ``parameters()`` are only its own weights (freezing
        or re-initialising the encoder, e.g. a frozen generator, never touches the table), and
        ``self.apply(init_fn)`` leaves the table's initialisation to the model.
        """
        self._item_table = (table,)  # a tuple: nn.Module registers no submodule for it
        size = getattr(self, "hidden_size", table.embedding_dim)
        if size != table.embedding_dim:
            msg = (
                f"hidden size {size} does not match the shared item table's {table.embedding_dim}: "
                "every encoder shares the UBE's item table, so leave `hidden` unset (it then "
                f"takes the UBE's size) or set it to {table.embedding_dim}."
            )
            raise EclsrError(msg)

    @property
    def item_embedding(self) -> nn.Embedding:
        """The shared item table given to :meth:`share_item_table`."""
        held = self.__dict__.get("_item_table")
        if held is None:
            msg = f"{type(self).__name__} has no item table: call self.share_item_table(ctx.item_embedding) in __init__."
            raise AttributeError(msg)
        return held[0]

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

    def encode_at(
        self,
        items: Tensor,
        lengths: Tensor,
        positions: Tensor,
        input_offset: Tensor | None = None,
    ) -> Tensor:
        """The hidden states at some positions only: ``[B, K, D]``, row b at ``positions[b]``.

        Must equal ``gather_positions(self(items, lengths), positions)`` up to dropout draws.
        This default does exactly that; an encoder that can skip work for the positions nobody
        asked for overrides it (the transformer encoders run their last block's queries only
        at ``positions``), which is what the dropout view, the generator and ranking call.

        Args:
            items: ``[B, T]`` item ids, right-padded with 0.
            lengths: ``[B]`` number of real items per row.
            positions: ``[B, K]`` indices into ``T`` (any valid index where a slot is unused).
            input_offset: optional ``[B, T, D]``, as in :meth:`forward` (a view that re-encodes
                the batch with an offset, e.g. conditioned on other states, passes it here).
        """
        return gather_positions(self(items, lengths, input_offset), positions)

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
