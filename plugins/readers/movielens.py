"""MovieLens ``.dat`` files: ``user::item::rating::timestamp`` (ml-1m, ml-10m).

Format of the GroupLens MovieLens dumps (Harper & Konstan, ACM TiiS 2015).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from eclsr.api import Interactions, ReaderConfig, hookimpl, read_lines, split_rows, to_numbers


class MovieLensDatReaderConfig(ReaderConfig):
    """MovieLens ``ratings.dat``: ``UserID::MovieID::Rating::Timestamp`` with no header."""

    name: Literal["movielens_dat"] = "movielens_dat"
    extensions = (".dat",)

    @classmethod
    def sniff(cls, head: list[str]) -> float:  # noqa: D102
        return 0.9 if head and all(line.count("::") == 3 for line in head) else 0.1

    def build(self, ctx: object = None) -> MovieLensDatReader:  # noqa: D102
        return MovieLensDatReader()


class MovieLensDatReader:
    """Parses a ``::``-separated ratings file."""

    def read(self, path: Path) -> Interactions:
        """Read ``path``; each line has exactly four ``::``-separated fields."""
        lines, numbers, blank = read_lines(path)
        users, items, ratings, times = split_rows(
            lines, numbers, b"::", 4, path, "user::item::rating::timestamp"
        )
        return Interactions(
            users=np.asarray(users),
            items=np.asarray(items),
            ratings=to_numbers(ratings, np.float64, numbers, path, "rating"),
            timestamps=to_numbers(times, np.float64, numbers, path, "timestamp"),
            lines=numbers,
            source=str(path),
            dropped={"blank lines": blank},
        )


@hookimpl
def eclsr_register_readers(register: object) -> None:
    """Register the MovieLens ``.dat`` reader."""
    register(MovieLensDatReaderConfig)  # type: ignore[operator]
