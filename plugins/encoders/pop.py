"""PopRec: rank every user's candidates by training popularity (a Table 3 baseline).

Paper: the most-popular baseline of ECL-SR's Table 3 (Zhou et al.), standard in sequential
recommendation. It has no parameters: ``user_vectors`` is a column of ones and ``item_vectors``
the training-interaction counts, so the generic dot-product ranking ranks by popularity.

Pop is for evaluation only. Use it with a single ``next_item`` head of weight 0 (heads need an
encoder output; ``forward`` returns zeros so they run) and ``train.epochs = 0``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

from eclsr.api import BuildContext, EclsrError, Encoder, EncoderConfig, hookimpl


class PopConfig(EncoderConfig):
    """Popularity ranking (evaluation only: train.epochs = 0, one next_item head of weight 0)."""

    name: Literal["pop"] = "pop"

    def build(self, ctx: BuildContext) -> Pop:
        """Build the ranker from ``ctx.item_counts``."""
        return Pop(self, ctx)

    def forward_flops(self, tokens: float, width: int, queries: float | None = None) -> float:
        """No matmuls: popularity needs no pass over the sequence."""
        return 0.0


class Pop(Encoder):
    """Scores item i by its training count; padding (row 0) scores -inf and never ranks."""

    def __init__(self, config: PopConfig, ctx: BuildContext) -> None:
        """Keep the counts ``[N+1]`` as a float column (a buffer, so it follows ``.to``)."""
        super().__init__()
        if ctx.item_counts.numel() != ctx.num_items + 1:
            msg = (
                f"pop needs the training counts of items 0..{ctx.num_items} in "
                f"BuildContext.item_counts, got {ctx.item_counts.numel()} values; build it from "
                f"the training split."
            )
            raise EclsrError(msg)
        self.hidden_size = config.hidden_size(ctx.hidden_size)
        scores = ctx.item_counts.detach().to(torch.float32).clone()  # [N+1]
        scores[0] = float("-inf")
        self.register_buffer("scores", scores.unsqueeze(1), persistent=False)  # [N+1, 1]

    def forward(self, items: Tensor, lengths: Tensor, input_offset: Tensor | None = None) -> Tensor:
        """Zeros ``[B, T, D]``: pop has no sequence representation."""
        return torch.zeros(*items.shape, self.hidden_size, device=items.device)

    def user_vectors(self, items: Tensor, lengths: Tensor) -> Tensor:
        """Ones ``[B, 1]``: every user gets the same popularity ranking."""
        return self.scores.new_ones(items.size(0), 1)

    def item_vectors(self, item_embedding: nn.Embedding, num_items: int) -> Tensor:
        """``[N+1, 1]`` training counts; row 0 (padding) is -inf."""
        return self.scores[: num_items + 1]


@hookimpl
def eclsr_register_encoders(register: Callable[[type], None]) -> None:
    """Register the popularity baseline."""
    register(PopConfig)
