"""BERT4Rec: bidirectional self-attention encoder (ECL-SR's generator, or a baseline UBE).

Paper: Sun et al., "BERT4Rec: Sequential Recommendation with Bidirectional Encoder
Representations from Transformer" (CIKM 2019). Same blocks as SASRec (RecBole 1.0.1), but every
real position attends to every real position; padding keys are masked out. The [MASK] token is
id N+1 of the shared item table (which has N+2 rows).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F  # noqa: N812
from pydantic import Field
from torch import Tensor

from eclsr.api import BuildContext, hookimpl
from eclsr.plugins.encoders._transformer import TransformerEncoder, TransformerEncoderConfig


class BERT4RecConfig(TransformerEncoderConfig):
    """BERT4Rec: a bidirectional transformer trained by masked-item prediction."""

    name: Literal["bert4rec"] = "bert4rec"
    dropout: float = Field(
        0.2,
        ge=0.0,
        lt=1.0,
        description="Hidden dropout: on the input embeddings and each residual.",
    )
    attn_dropout: float = Field(
        0.2, ge=0.0, lt=1.0, description="Dropout on the attention probabilities."
    )

    def build(self, ctx: BuildContext) -> BERT4Rec:
        """Build the encoder around the shared item table."""
        return BERT4Rec(self, ctx)


class BERT4Rec(TransformerEncoder):
    """Bidirectional transformer encoder with a boolean key-padding mask ``[B, 1, 1, T]``.

    Real positions never attend to padding, so appending padding to a row leaves the outputs at
    its real positions unchanged.
    """

    causal: ClassVar[bool] = False

    def __init__(self, config: BERT4RecConfig, ctx: BuildContext) -> None:
        """Build the encoder; remembers the [MASK] id (N+1) for :meth:`user_vectors`."""
        super().__init__(config, ctx)
        self.mask_token = ctx.mask_token

    def user_vectors(self, items: Tensor, lengths: Tensor) -> Tensor:
        """``[B, D]``: the state at a [MASK] appended after the last item (BERT4Rec inference).

        Rows already at ``max_len`` drop their oldest item to make room for the [MASK].
        """
        items, lengths = append_mask(items, lengths, self.mask_token, self.max_len)
        return super().user_vectors(items, lengths)  # the last real position is now the [MASK]


def append_mask(
    items: Tensor, lengths: Tensor, mask_token: int, max_len: int
) -> tuple[Tensor, Tensor]:
    """Append ``mask_token`` after each row's last item, keeping at most ``max_len`` positions.

    Args:
        items: ``[B, T]`` right-padded ids, ``T <= max_len``.
        lengths: ``[B]`` real lengths.
        mask_token: the [MASK] id.
        max_len: widest allowed row.

    Returns:
        ``[B, min(T + 1, max_len)]`` ids and the ``[B]`` new lengths.
    """
    width = min(items.size(1) + 1, max_len)
    grown = F.pad(items, (0, 1))  # [B, T+1]
    shifted = F.pad(items[:, 1:], (0, 2))  # [B, T+1], oldest item dropped
    full = (lengths >= max_len).unsqueeze(1)  # [B, 1]
    grown = torch.where(full, shifted, grown)
    new_lengths = (lengths + 1).clamp(max=max_len)  # [B]
    grown = grown.scatter(1, (new_lengths - 1).unsqueeze(1), mask_token)
    return grown[:, :width], new_lengths


@hookimpl
def eclsr_register_encoders(register: Callable[[type], None]) -> None:
    """Register BERT4Rec."""
    register(BERT4RecConfig)
