"""In-memory sequence data: every user's chronological items as one contiguous array (CSR)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np


@dataclass
class SequenceDataset:
    """All users' item sequences, oldest first, ids remapped to 1..N (0 = padding).

    Attributes:
        items: ``[total]`` int64, every user's items concatenated.
        offsets: ``[U+1]`` int64, user ``u`` owns ``items[offsets[u]:offsets[u+1]]``.
        num_items: N.
        name: a label for reports.
        source_hash: sha256 of the source file(s) and preprocessing (protocol stamp).
        item_vocab: raw id of item ``i`` at index ``i`` (index 0 is ``""``), when known.
        user_vocab: raw id of user ``u`` at index ``u``, when known.
        protocol: preprocessing facts to record with results.
        split_points: ``[U, 2]`` int64 for ``split = "time"`` only, else None. Row ``u`` = (p0, p1):
            items ``[:p0]`` are training history, ``[p0:p1]`` validation targets and ``[p1:]``
            test targets. None means leave-one-out (``[:-2]`` / ``[-2]`` / ``[-1]``).
        from_cache: True when the arrays were loaded from the preprocessing cache.
    """

    items: np.ndarray
    offsets: np.ndarray
    num_items: int
    name: str = "dataset"
    source_hash: str = ""
    item_vocab: list[str] | None = None
    user_vocab: list[str] | None = None
    protocol: dict[str, object] = field(default_factory=dict)
    split_points: np.ndarray | None = None
    from_cache: bool = False

    @property
    def num_users(self) -> int:
        """Number of users U."""
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """``[U]`` sequence length per user."""
        return np.diff(self.offsets)

    def sequence(self, user: int) -> np.ndarray:
        """The items of one user (a view, oldest first)."""
        return self.items[self.offsets[user] : self.offsets[user + 1]]


def from_sequences(
    sequences: list[list[int]], num_items: int | None = None, name: str = "dataset"
) -> SequenceDataset:
    """Build a dataset from Python lists of item ids already in 1..N."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = np.fromiter((i for s in sequences for i in s), dtype=np.int64, count=int(offsets[-1]))
    n = int(flat.max()) if num_items is None and flat.size else int(num_items or 0)
    digest = hashlib.sha256(flat.tobytes() + offsets.tobytes()).hexdigest()
    return SequenceDataset(flat, offsets, n, name=name, source_hash=digest)
