"""Reader plugins: turn a file of some format into :class:`Interactions`.

A reader is a frozen pydantic config class (registered through ``eclsr_register_readers``)
whose ``build()`` returns an object with ``read(path) -> Interactions``. Readers only parse:
ordering, filtering, id remapping and splitting happen afterwards in
:mod:`eclsr.data.preprocess`, identically for every format.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from eclsr.components.configs import ComponentConfig


@dataclass
class Interactions:
    """Raw interactions in file order, one row per event.

    Attributes:
        users: ``[n]`` raw user ids (integer, bytes or str array).
        items: ``[n]`` raw item ids (integer, bytes or str array).
        timestamps: ``[n]`` float64 event times, or None when the format has none.
        ratings: ``[n]`` float64 ratings, or None.
        lines: ``[n]`` int64 1-based line number of each row in ``source`` (for error messages),
            or None when rows have no lines (Parquet, DataFrames).
        source: the file (or a label) the rows came from.
        chronological: True when each user's rows are already oldest-first in file order
            (sequence and pair files); timestamps, if any, are then ignored for ordering.
        dropped: rows the reader skipped on purpose (e.g. blank lines), by reason.
    """

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray | None = None
    ratings: np.ndarray | None = None
    lines: np.ndarray | None = None
    source: str = "<memory>"
    chronological: bool = False
    dropped: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.users)


class Reader(Protocol):
    """What ``ReaderConfig.build()`` returns."""

    def read(self, path: Path) -> Interactions:
        """Parse ``path`` into interactions; raise ``eclsr.DataError`` naming file and line."""
        ...


class ReaderConfig(ComponentConfig):
    """Config of a data-file reader; ``build`` returns a :class:`Reader`.

    Class attributes used by ``format = "auto"``:
        extensions: file suffixes (lowercase, with the dot) this reader claims.
        sniff: scores the first lines of a file (higher wins among readers claiming the suffix).
    """

    kind: ClassVar[str] = "reader"
    extensions: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def sniff(cls, head: list[str]) -> float:
        """How likely the file whose first lines are ``head`` is in this format (0..1)."""
        return 0.5

    def build(self, ctx: Any = None) -> Reader:  # noqa: D102
        return super().build(ctx)
