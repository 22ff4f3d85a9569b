"""Position and tensor helpers for right-padded ``[B, T]`` batches (item ids 1..N, 0 = padding)."""

from __future__ import annotations

import torch
from torch import Tensor


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
