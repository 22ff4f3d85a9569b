"""Data in: readers, preprocessing, catalogue, cache, splits.

Entry points: :func:`load_dataset` (a recipe's ``data`` section → ``SequenceDataset``),
:func:`load_file`, :func:`from_dataframe`, :func:`stats`, :func:`download`.
"""

from __future__ import annotations

from eclsr.components.readers import Interactions, Reader, ReaderConfig
from eclsr.data.catalogue import CATALOGUE, CatalogueEntry
from eclsr.data.loader import (
    choose_reader,
    from_dataframe,
    load_dataset,
    load_file,
    prepare,
    stats,
)

__all__ = [
    "CATALOGUE",
    "CatalogueEntry",
    "Interactions",
    "Reader",
    "ReaderConfig",
    "choose_reader",
    "from_dataframe",
    "load_dataset",
    "load_file",
    "prepare",
    "stats",
]
