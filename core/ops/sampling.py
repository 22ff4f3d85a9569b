"""Batched random draws shared by augmentations (public: plugins may use them too)."""

from __future__ import annotations

import torch
from torch import Tensor

#: So floor(0.29 * 100) is 29, not 28, despite float rounding.
FLOOR_SLACK = 1e-9


def randint_below(generator: torch.Generator, upper: Tensor) -> Tensor:
    """Uniform integers in ``[0, upper)`` elementwise (every ``upper >= 1``) from ``generator``."""
    u = torch.rand(upper.shape, generator=generator, device=generator.device, dtype=torch.float64)
    value = (u.to(upper.device) * upper).long()
    return torch.minimum(value, upper - 1)


def window_length(lengths: Tensor, ratio: float) -> Tensor:
    """``[B]`` window sizes ``max(1, floor(ratio·n))``."""
    size = torch.floor(lengths.double() * ratio + FLOOR_SLACK).long()
    return size.clamp(min=1)
