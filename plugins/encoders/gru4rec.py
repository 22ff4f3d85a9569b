"""GRU4Rec: recurrent user-behaviour encoder.

Paper: Hidasi et al., "Session-based Recommendations with Recurrent Neural Networks" (ICLR 2016),
in the RecBole 1.0.1 form that ECL-SR compares against: item embedding → dropout → bias-free GRU →
Linear back to D. Causal by construction, so right padding never reaches real positions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import Field
from torch import Tensor, nn

from eclsr.api import BuildContext, Encoder, EncoderConfig, hookimpl


class GRU4RecConfig(EncoderConfig):
    """GRU4Rec: a GRU over the item embeddings."""

    name: Literal["gru4rec"] = "gru4rec"
    layers: int = Field(1, ge=1, description="Number of stacked GRU layers.")
    gru_size: int | None = Field(
        None, gt=0, description="Size of the GRU state; None: the hidden size D."
    )
    dropout: float = Field(
        0.3, ge=0.0, lt=1.0, description="Dropout on the item embeddings fed to the GRU."
    )

    def build(self, ctx: BuildContext) -> GRU4Rec:
        """Build the encoder around the shared item table."""
        return GRU4Rec(self, ctx)


class GRU4Rec(Encoder):
    """Embedding dropout, an ``nn.GRU`` and a Linear from the GRU state back to D."""

    def __init__(self, config: GRU4RecConfig, ctx: BuildContext) -> None:
        """Build the GRU around the shared item table."""
        super().__init__()
        hidden = config.hidden_size(ctx.hidden_size)
        state = config.gru_size or hidden
        self.hidden_size = hidden
        self.share_item_table(ctx.item_embedding)
        self.dropout = nn.Dropout(config.dropout)
        self.gru = nn.GRU(hidden, state, num_layers=config.layers, bias=False, batch_first=True)
        self.proj = nn.Linear(state, hidden)
        for name, weight in self.gru.named_parameters():  # RecBole: Xavier-uniform GRU weights
            if name.startswith("weight_"):
                nn.init.xavier_uniform_(weight)

    def forward(self, items: Tensor, lengths: Tensor, input_offset: Tensor | None = None) -> Tensor:
        """Encode right-padded ``items`` ``[B, T]`` → ``[B, T, D]``."""
        x = self.item_embedding(items)  # [B, T, D]
        if input_offset is not None:
            x = x + input_offset  # [B, T, D]
        states, _ = self.gru(self.dropout(x))  # [B, T, S]
        return self.proj(states)  # [B, T, D]


@hookimpl
def eclsr_register_encoders(register: Callable[[type], None]) -> None:
    """Register GRU4Rec."""
    register(GRU4RecConfig)
