"""Parquet tables via pyarrow (optional extra: ``pip install 'eclsr[parquet]'``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from eclsr.api import (
    DataError,
    Interactions,
    ReaderConfig,
    hookimpl,
    interactions_from_columns,
    pick_columns,
    require_file,
)


class ParquetReaderConfig(ReaderConfig):
    """A Parquet table with one row per interaction."""

    name: Literal["parquet"] = "parquet"
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Role (user, item, timestamp, rating) → column name; unnamed roles use common names.",
    )
    extensions = (".parquet", ".pq")

    def build(self, ctx: object = None) -> ParquetReader:  # noqa: D102
        return ParquetReader(self)


class ParquetReader:
    """Reads the mapped columns of a Parquet file."""

    def __init__(self, config: ParquetReaderConfig) -> None:
        self.config = config

    def read(self, path: Path) -> Interactions:
        """Read ``path`` with pyarrow."""
        require_file(path)
        try:
            import pyarrow.parquet as pq
        except ImportError:
            msg = f"reading {path} needs pyarrow: pip install 'eclsr[parquet]'."
            raise DataError(msg) from None
        table = _read_table(pq, path)
        names = list(table.column_names)
        roles = pick_columns(names, self.config.columns, path)
        columns = [
            np.asarray(table.column(i).to_numpy()) if i in roles.values() else np.empty(0)
            for i in range(len(names))
        ]
        return interactions_from_columns(columns, roles, None, path, names)


def _read_table(pq: object, path: Path) -> object:
    """``pq.read_table(path)``; a file that is not Parquet (or is cut short) is a DataError."""
    try:
        import pyarrow

        arrow_errors: tuple[type[BaseException], ...] = (pyarrow.ArrowException,)
    except (ImportError, AttributeError):
        arrow_errors = ()
    try:
        return pq.read_table(path)  # type: ignore[attr-defined]
    except (OSError, ValueError, *arrow_errors) as exc:
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        msg = (
            f"data file {str(path)!r} cannot be read as Parquet ({detail}). It is truncated, "
            "damaged or in another format; set data.reader to the right format or restore the file."
        )
        raise DataError(msg) from None


@hookimpl
def eclsr_register_readers(register: object) -> None:
    """Register the Parquet reader."""
    register(ParquetReaderConfig)  # type: ignore[operator]
