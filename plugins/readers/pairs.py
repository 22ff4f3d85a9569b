"""Pair files: ``user item`` per line, each user's lines oldest first (the SASRec files).

Format of the data shipped with SASRec (Kang & McAuley, ICDM 2018), e.g. ``ml-1m.txt``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from eclsr.api import Interactions, ReaderConfig, hookimpl, read_lines, split_rows


class PairsReaderConfig(ReaderConfig):
    """One interaction per line: ``user item`` separated by whitespace, in chronological order."""

    name: Literal["pairs"] = "pairs"
    separator: str | None = Field(
        None, description="Field separator; None splits on any whitespace."
    )
    extensions = (".txt", ".pairs")

    @classmethod
    def sniff(cls, head: list[str]) -> float:  # noqa: D102
        if any(len(line.split()) != 2 for line in head):
            return 0.0
        users = [line.split()[0] for line in head]
        return 0.8 if len(set(users)) < len(users) else 0.2

    def build(self, ctx: object = None) -> PairsReader:  # noqa: D102
        return PairsReader(self)


class PairsReader:
    """Parses a pair file; rows keep file order, which is each user's chronological order."""

    def __init__(self, config: PairsReaderConfig) -> None:
        self.config = config

    def read(self, path: Path) -> Interactions:
        """Read ``path``; every line must have exactly two fields."""
        lines, numbers, blank = read_lines(path)
        sep = self.config.separator.encode() if self.config.separator else None
        users, items = split_rows(lines, numbers, sep, 2, path, "user item")
        return Interactions(
            np.asarray(users),
            np.asarray(items),
            lines=numbers,
            source=str(path),
            chronological=True,
            dropped={"blank lines": blank},
        )


@hookimpl
def eclsr_register_readers(register: object) -> None:
    """Register the pair-file reader."""
    register(PairsReaderConfig)  # type: ignore[operator]
