"""Evaluation splits (leave-one-out, time-based) and the training/evaluation windows they give.

A window is a slice ``items[start:start+length]`` of the flat item array: no per-sample objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eclsr.data.sequences import SequenceDataset
from eclsr.errors import DataError


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
