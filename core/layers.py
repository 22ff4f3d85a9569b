"""Small layers shared by plugins (public API)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class FastDropout(nn.Module):
    """Inverted dropout drawing its mask with ``rand_like`` (torch's global generator, like ``nn.Dropout``).

    Same distribution as ``nn.Dropout``; on this project's CPU it measured about 2x faster than
    ``F.dropout``, whose ``bernoulli_`` was 14% of an ECL-SR step at the ML-1m shape.
    """

    def __init__(self, p: float) -> None:
        """Drop each element with probability ``p``."""
        super().__init__()
        if not 0.0 <= p < 1.0:
            msg = f"dropout probability must be in [0, 1), got {p}"
            raise ValueError(msg)
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        """Zero elements with probability ``p`` and scale the rest by ``1 / (1 - p)`` (training only)."""
        if not self.training or self.p == 0.0:
            return x
        return x * keep_mask(x, self.p)

    def extra_repr(self) -> str:  # noqa: D102
        return f"p={self.p}"


def keep_mask(x: Tensor, p: float) -> Tensor:
    """A float mask like ``x``: ``1 / (1 - p)`` with probability ``1 - p``, else 0.

    Built in place in the ``rand_like`` buffer (no bool tensor, no type promotion in the product):
    ``x * keep_mask(x, p)`` measured about 1.5x faster forward + backward than
    ``x * (rand >= p) * scale`` on this CPU, with bit-identical values for the same draws.
    """
    return torch.rand_like(x).ge_(p).mul_(1.0 / (1.0 - p))
