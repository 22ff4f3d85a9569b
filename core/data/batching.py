"""Trimmed, length-bucketed training batches built from contiguous arrays.

No per-sample Python objects: a batch is gathered from the flat item array with one fancy-index
into a ``[B, T]`` matrix, where ``T`` is the batch's longest row (right-padded with 0).
"""

from __future__ import annotations

import numpy as np
import torch

from eclsr.components.step import Batch
from eclsr.data.sequences import SequenceDataset
from eclsr.data.splits import Windows


def gather(
    items: np.ndarray, windows: Windows, rows: np.ndarray, shift: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``[B, T]`` matrix of ``items[start + shift + t]`` for the selected rows, right-padded with 0."""
    length = windows.length[rows]
    width = int(length.max())
    col = np.arange(width)
    index = windows.start[rows, None] + shift + col  # [B, T]
    real = col < length[:, None]
    matrix = np.where(real, items[np.where(real, index, 0)], 0)
    return matrix, length


def make_batch(data: SequenceDataset, windows: Windows, rows: np.ndarray) -> Batch:
    """A training batch: inputs and next-item targets for ``rows`` of ``windows``.

    For ``last_only`` windows every target but the one after a row's last real item is 0, so the
    next-item loss (which skips target 0) sees one target per row, while every other head still
    sees the whole row.
    """
    inputs, length = gather(data.items, windows, rows)
    targets, _ = gather(data.items, windows, rows, shift=1)
    if windows.last_only:
        last = np.arange(targets.shape[1]) == (length - 1)[:, None]  # [B, T]
        targets = np.where(last, targets, 0)
    return Batch(
        torch.from_numpy(inputs),
        torch.from_numpy(targets),
        torch.from_numpy(length),
        torch.from_numpy(windows.users[rows]),
    )


def epoch_order(
    windows: Windows, batch_size: int, seed: int, epoch: int, bucket: bool
) -> list[np.ndarray]:
    """The batches of one epoch as arrays of window rows, a pure function of (seed, epoch).

    With ``bucket``, rows are sorted by length (random tie-break) and cut into batches, whose order
    is then shuffled: every batch holds rows of similar length, so trimming removes most padding.
    """
    rng = np.random.default_rng([seed, epoch])
    count = len(windows.users)
    if bucket:
        order = np.lexsort((rng.random(count), windows.length))
    else:
        order = rng.permutation(count)
    batches = [order[i : i + batch_size] for i in range(0, count, batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def positions_per_epoch(windows: Windows) -> int:
    """Number of real input positions in one epoch (what the encoders process)."""
    return int(windows.length.sum())


def targets_per_epoch(windows: Windows) -> int:
    """Number of next-item loss terms in one epoch: one per row of prefix examples."""
    return len(windows.length) if windows.last_only else positions_per_epoch(windows)
