"""CSV / TSV tables with a header and a column mapping (e.g. MovieLens ``ratings.csv``).

Generic interaction logs as used by most sequential-recommendation papers' preprocessing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from eclsr.api import Interactions, ReaderConfig, hookimpl, read_delimited


class CsvReaderConfig(ReaderConfig):
    """Delimited text with one row per interaction and user/item/timestamp/rating columns."""

    name: Literal["csv"] = "csv"
    delimiter: str | None = Field(
        None, description="Field separator; None sniffs , tab ; | from the first line."
    )
    header: bool = Field(True, description="Whether the first line names the columns.")
    names: list[str] | None = Field(None, description="Column names when header is false.")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Role (user, item, timestamp, rating) → column name; unnamed roles use common names.",
    )
    extensions = (".csv", ".tsv")

    def build(self, ctx: object = None) -> CsvReader:  # noqa: D102
        return CsvReader(self)


class CsvReader:
    """Reads a delimited table; quoted fields are supported."""

    def __init__(self, config: CsvReaderConfig) -> None:
        self.config = config

    def read(self, path: Path) -> Interactions:
        """Read ``path`` (tab separated when its suffix is ``.tsv`` and no delimiter is set)."""
        delimiter = self.config.delimiter or ("\t" if path.suffix.lower() == ".tsv" else None)
        return read_delimited(
            path, delimiter, self.config.columns, self.config.header, self.config.names
        )


@hookimpl
def eclsr_register_readers(register: object) -> None:
    """Register the CSV/TSV reader."""
    register(CsvReaderConfig)  # type: ignore[operator]
