"""Training examples: how training rows are cut from each user's training history.

``sequence`` (one row per user, loss at every position), ``prefixes`` (one row per target, loss at
its last position) and ``windows`` (the whole history tiled into ``max_len`` chunks). Rows are
:class:`~eclsr.data.splits.Windows` over the flat item array, so batching, bucketing and DDP
sharding treat every mode alike.
"""

from __future__ import annotations

import numpy as np

from eclsr.data.sequences import SequenceDataset
from eclsr.data.splits import Windows
from eclsr.errors import DataError


def training_examples(
    data: SequenceDataset, base: Windows, mode: str, max_len: int, min_length: int = 1
) -> Windows:
    """The training rows of one epoch, cut from each user's training history.

    ``base`` is the split's own training windows (one row per user: the last ``max_len`` items
    before the user's last training target, which is item ``start + length``). Every mode uses
    only items ``offsets[u] .. start + length`` of a user, so no validation or test item can
    enter a training row.

    Args:
        data: the dataset (for user offsets).
        base: ``split.train()``.
        mode: ``"sequence"`` (``base`` itself), ``"prefixes"`` or ``"windows"``.
        max_len: widest row.
        min_length: fewest input items of a prefix / of an older chunk.

    Returns:
        The rows, sorted by user then by end position.
    """
    if mode == "sequence":
        return base
    first = data.offsets[base.users]  # [U'] index of each user's oldest item
    end = base.start + base.length  # [U'] index of each user's last training target
    if mode == "prefixes":
        return _prefixes(base.users, first, end, max_len, min_length)
    if mode == "windows":
        return _chunks(base.users, first, end, max_len, min_length)
    msg = f"unknown training-example mode {mode!r}; expected sequence, prefixes or windows"
    raise DataError(msg)


def _ranks_within(counts: np.ndarray) -> np.ndarray:
    """``[Σ counts]``: 0, 1, .., c-1 for each group of ``counts`` in turn."""
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(int(counts.sum())) - starts


def _prefixes(
    users: np.ndarray, first: np.ndarray, end: np.ndarray, max_len: int, min_length: int
) -> Windows:
    """One row per target ``j`` in ``first+1 .. end``: inputs ``max(first, j-max_len) .. j-1``."""
    counts = end - first  # targets per user
    target = np.repeat(first, counts) + 1 + _ranks_within(counts)  # [R] item index of the target
    start = np.maximum(np.repeat(first, counts), target - max_len)
    length = target - start
    keep = length >= min_length
    ones = np.ones(int(keep.sum()), dtype=np.int64)
    return Windows(np.repeat(users, counts)[keep], start[keep], length[keep], ones, last_only=True)


def _chunks(
    users: np.ndarray, first: np.ndarray, end: np.ndarray, max_len: int, min_length: int
) -> Windows:
    """Non-overlapping chunks of targets, newest first: chunk k ends at target ``end - k·max_len``.

    A chunk's inputs are the ``min(max_len, available)`` items before its end target, so chunk 0
    is the ``sequence`` row and the chunks' targets cover every training target exactly once.
    """
    counts = -(-(end - first) // max_len)  # ceil: chunks per user
    rank = _ranks_within(counts)  # [R] 0 = newest chunk
    stop = np.repeat(end, counts) - rank * max_len  # [R] end target of each chunk
    start = np.maximum(np.repeat(first, counts), stop - max_len)
    length = stop - start
    keep = (rank == 0) | (length >= min_length)
    ones = np.ones(int(keep.sum()), dtype=np.int64)
    return Windows(np.repeat(users, counts)[keep], start[keep], length[keep], ones)
