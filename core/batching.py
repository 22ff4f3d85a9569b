"""Leave-one-out splits and trimmed, length-bucketed batches built from contiguous arrays.

No per-sample Python objects: a batch is gathered from the flat item array with one fancy-index
into a ``[B, T]`` matrix, where ``T`` is the batch's longest row (right-padded with 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from eclsr.dataset import SequenceDataset
from eclsr.errors import DataError
from eclsr.step import Batch


@dataclass(frozen=True)
class Windows:
    """For each user, a window ``items[start:start+length]`` of inputs (and what to predict).

    Attributes:
        users: ``[U']`` user indices.
        start: ``[U']`` start offsets into the flat item array.
        length: ``[U']`` window lengths (>= 1).
        target: ``[U']`` held-out target item (evaluation), or the offset shift 1 for training.
        last_only: training rows whose next-item loss applies at the last real position only
            (prefix examples); their batches carry target 0 at every other position.
    """

    users: np.ndarray
    start: np.ndarray
    length: np.ndarray
    target: np.ndarray
    last_only: bool = False


@dataclass(frozen=True)
class LeaveOneOut:
    """Leave-one-out split: last item = test, second last = validation, the rest trains.

    The test history includes the validation item. Histories keep the ``max_len`` most recent items.
    """

    data: SequenceDataset
    max_len: int

    def __post_init__(self) -> None:
        short = int((self.data.lengths < 3).sum())
        if short == self.data.num_users:
            msg = (
                "every user has fewer than 3 items; leave-one-out needs >= 3 (train, valid, test)."
            )
            raise DataError(msg)

    def train(self) -> Windows:
        """Training inputs ``s[:-3]`` predicting ``s[1:-2]`` (users with >= 4 items)."""
        n = self.data.lengths
        keep = np.flatnonzero(n >= 4)
        inputs = n[keep] - 3
        length = np.minimum(inputs, self.max_len)
        start = self.data.offsets[keep] + inputs - length
        return Windows(keep, start, length, np.ones_like(keep))

    def evaluation(self, which: str) -> Windows:
        """Histories and targets for ``which`` in {"valid", "test"} (users with >= 3 items)."""
        back = {"valid": 2, "test": 1}[which]
        n = self.data.lengths
        keep = np.flatnonzero(n >= 3)
        end = self.data.offsets[keep] + n[keep] - back  # index of the target
        history = n[keep] - back
        length = np.minimum(history, self.max_len)
        return Windows(keep, end - length, length, self.data.items[end])


@dataclass(frozen=True)
class TimeSplit:
    """Global time split: per user, items before ``p0`` train, the first item in ``[p0, p1)`` is the
    validation target and the first item from ``p1`` on is the test target (each with its whole
    earlier history, cut to ``max_len``). ``split_points`` come from the data layer's time cut-offs.
    """

    data: SequenceDataset
    max_len: int

    def train(self) -> Windows:
        """Inputs ``s[:p0-1]`` predicting ``s[1:p0]`` (users with >= 2 training items)."""
        p0 = self.data.split_points[:, 0]
        keep = np.flatnonzero(p0 >= 2)
        length = np.minimum(p0[keep] - 1, self.max_len)
        start = self.data.offsets[keep] + p0[keep] - 1 - length
        return Windows(keep, start, length, np.ones_like(keep))

    def evaluation(self, which: str) -> Windows:
        """The first validation (``"valid"``) or test (``"test"``) item of each user that has one."""
        points = self.data.split_points
        cut = points[:, 0] if which == "valid" else points[:, 1]
        end = points[:, 1] if which == "valid" else self.data.lengths
        keep = np.flatnonzero((cut < end) & (cut >= 1))
        length = np.minimum(cut[keep], self.max_len)
        target = self.data.offsets[keep] + cut[keep]
        return Windows(keep, target - length, length, self.data.items[target])


def make_split(data: SequenceDataset, max_len: int) -> LeaveOneOut | TimeSplit:
    """The split the data carries: a time split when it has split points, else leave-one-out."""
    if getattr(data, "split_points", None) is not None:
        return TimeSplit(data, max_len)
    return LeaveOneOut(data, max_len)


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
