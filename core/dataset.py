"""In-memory sequence data: every user's chronological items as one contiguous array (CSR)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eclsr.errors import DataError


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
    """

    items: np.ndarray
    offsets: np.ndarray
    num_items: int
    name: str = "dataset"
    source_hash: str = ""
    item_vocab: list[str] | None = None
    user_vocab: list[str] | None = None
    protocol: dict[str, object] = field(default_factory=dict)

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


def read_sequence_file(path: str | Path) -> SequenceDataset:
    """Read the one-line-per-user format ``user item item ...`` (items oldest first).

    Item ids must be positive integers; they are kept as they are when they already run 1..N
    contiguously (the S3-Rec/ICLRec files), otherwise remapped in order of first appearance.
    """
    file = Path(path)
    if not file.is_file():
        msg = f"data file {str(file)!r} does not exist. Check the path, or set data.data_dir / ECLSR_DATA_DIR to the folder holding it."
        raise DataError(msg)
    raw = file.read_bytes()
    users: list[str] = []
    sequences: list[list[int]] = []
    for number, line in enumerate(raw.decode("utf-8", errors="strict").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            msg = f"{file}:{number}: a line needs a user id followed by at least one item id, got {line.strip()!r}."
            raise DataError(msg)
        try:
            seq = [int(f) for f in fields[1:]]
        except ValueError:
            msg = f"{file}:{number}: item ids must be integers in this format, got {line.strip()[:80]!r}."
            raise DataError(msg) from None
        if min(seq) < 1:
            msg = f"{file}:{number}: item ids must be >= 1 (0 is reserved for padding)."
            raise DataError(msg)
        users.append(fields[0])
        sequences.append(seq)
    if not sequences:
        msg = f"data file {str(file)!r} holds no sequences."
        raise DataError(msg)
    data = _remap_if_needed(sequences)
    data.name = file.stem
    data.source_hash = hashlib.sha256(raw).hexdigest()
    data.user_vocab = users
    return data


def _remap_if_needed(sequences: list[list[int]]) -> SequenceDataset:
    data = from_sequences(sequences)
    distinct = np.unique(data.items)
    if distinct[0] == 1 and distinct[-1] == len(distinct):
        data.item_vocab = [""] + [str(i) for i in range(1, len(distinct) + 1)]
        return data
    # Not contiguous: remap to 1..N in order of first appearance, keeping the raw ids.
    _, first = np.unique(data.items, return_index=True)
    order = distinct[np.argsort(first)]
    lookup = {int(raw): new for new, raw in enumerate(order, start=1)}
    data.items = np.array([lookup[int(i)] for i in data.items], dtype=np.int64)
    data.num_items = len(order)
    data.item_vocab = [""] + [str(int(r)) for r in order]
    return data
