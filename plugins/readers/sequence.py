"""Sequence files: one line per user, ``user item item ...``, items oldest first.

The format of the S3-Rec / ICLRec / CoSeRec benchmark files (Zhou et al., CIKM 2020).
"""

from __future__ import annotations

from itertools import chain, islice
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from eclsr.api import DataError, Interactions, ReaderConfig, hookimpl, read_lines, to_numbers


class SequenceReaderConfig(ReaderConfig):
    """One line per user: a user id, then that user's item ids oldest first (space separated)."""

    name: Literal["sequence"] = "sequence"
    integer_items: bool = Field(
        True, description="Require item ids to be integers (true for the benchmark files)."
    )
    extensions = (".txt", ".seq")

    @classmethod
    def sniff(cls, head: list[str]) -> float:  # noqa: D102
        return 0.9 if any(len(line.split()) != 2 for line in head) else 0.3

    def build(self, ctx: object = None) -> SequenceReader:  # noqa: D102
        return SequenceReader(self)


class SequenceReader:
    """Parses a sequence file into interactions in file (= chronological) order."""

    def __init__(self, config: SequenceReaderConfig) -> None:
        self.config = config

    def read(self, path: Path) -> Interactions:
        """Read ``path``; every line needs a user id and at least one item."""
        lines, numbers, blank = read_lines(path)
        rows = [line.split() for line in lines]
        counts = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows)) - 1
        short = np.flatnonzero(counts < 1)
        if short.size:
            msg = f"{path}:{numbers[short[0]]}: a line needs a user id followed by at least one item id, got {lines[short[0]].decode(errors='replace')!r}."
            raise DataError(msg)
        first = np.asarray([row[0] for row in rows])
        _refuse_repeated_users(first, numbers, path)
        users = np.repeat(first, counts)
        tokens = list(chain.from_iterable(islice(row, 1, None) for row in rows))
        line_of = np.repeat(numbers, counts)
        items = np.asarray(tokens)
        if self.config.integer_items:  # checked, but kept as text: the id rule of every reader
            to_numbers(items, np.int64, line_of, path, "item")
        return Interactions(
            users,
            items,
            lines=line_of,
            source=str(path),
            chronological=True,
            dropped={"blank lines": blank},
        )


def _refuse_repeated_users(users: np.ndarray, numbers: np.ndarray, path: Path) -> None:
    """One line per user: a second line for a user would silently append to (or reorder) it."""
    _, first, counts = np.unique(users, return_index=True, return_counts=True)
    if (counts == 1).all():
        return
    repeated = users == users[first[np.flatnonzero(counts > 1)[0]]]
    lines = numbers[repeated][:2]
    msg = (
        f"{path}:{lines[1]}: user {users[repeated][0].decode(errors='replace')!r} already has a "
        f"line ({path}:{lines[0]}); a sequence file holds one line per user. Merge the lines in "
        f"time order ({int((counts > 1).sum())} user(s) repeated)."
    )
    raise DataError(msg)


@hookimpl
def eclsr_register_readers(register: object) -> None:
    """Register the sequence-file reader."""
    register(SequenceReaderConfig)  # type: ignore[operator]
