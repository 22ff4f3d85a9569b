"""Named datasets: where each lives, its canonical source, format, preprocessing and statistics.

A catalogue name in ``data.dataset`` is looked up in the data directory (``data.data_dir``, else
``$ECLSR_DATA_DIR``, else ``./data``). Runs never download; ``eclsr data download NAME`` does.
Preprocessing given here applies unless the recipe sets that option itself.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eclsr.data.config import DataConfig
from eclsr.errors import DataError

DATA_DIR_ENV = "ECLSR_DATA_DIR"
_ICLREC = "https://raw.githubusercontent.com/salesforce/ICLRec/2890e6c3ff6a22c6699fc19cb863b66786c1cde4/data/"
_GROUPLENS = "https://files.grouplens.org/datasets/movielens/"
_S3REC_PREP = (
    "S3-Rec data_process.py: all ratings, chronological, iterative 5-core (already applied)"
)


@dataclass(frozen=True)
class CatalogueEntry:
    """One named dataset.

    Attributes:
        name: the catalogue name.
        description: one line for listings.
        path: the file, relative to the data directory.
        config: ``DataConfig`` values (reader, columns, k_core, ...) used unless the recipe sets them.
        url: canonical public source (a file, or a zip holding ``archive_member``); None: manual.
        sha256: checksum of the file at ``path``; None when not recorded.
        archive_member: member of the downloaded zip that becomes ``path``.
        expected: users / items / actions after preprocessing (the paper's Table 2 where it has them).
        notes: provenance, preprocessing and terms of use.
    """

    name: str
    description: str
    path: str
    config: dict[str, Any] = field(default_factory=dict)
    url: str | None = None
    sha256: str | None = None
    archive_member: str | None = None
    expected: dict[str, int] = field(default_factory=dict)
    notes: str = ""


def _s3rec(
    name: str, title: str, blob: str, sha: str | None, stats: tuple[int, int, int]
) -> CatalogueEntry:
    return CatalogueEntry(
        name=name,
        description=f"{title} (S3-Rec/ICLRec sequence file, 5-core)",
        path=f"{name}.txt",
        config={"reader": {"name": "sequence"}},
        url=_ICLREC + blob,
        sha256=sha,
        expected=dict(zip(("users", "items", "actions"), stats, strict=True)),
        notes=_S3REC_PREP
        + ". Data terms: the original source's (McAuley Amazon reviews / Yelp dataset terms).",
    )


CATALOGUE: dict[str, CatalogueEntry] = {
    e.name: e
    for e in (
        _s3rec(
            "toys",
            "Amazon Toys and Games",
            "Toys_and_Games.txt",
            "176c680c688d497598c4a89a03b402c0fe78d795e5db335c2e78dd5f2d778a3f",
            (19412, 11924, 167597),
        ),
        _s3rec(
            "sports",
            "Amazon Sports and Outdoors",
            "Sports_and_Outdoors.txt",
            "2a095e0648872beb9982408958290f5d655db5be2911c3756b5446de9f0b8de2",
            (35598, 18357, 296337),
        ),
        _s3rec(
            "yelp",
            "Yelp 2019",
            "Yelp.txt",
            "724b219106b81dd2349027da997334ddb6da9fe2f152ad6e0d97a93170f7caed",
            (30431, 20033, 316354),
        ),
        _s3rec(
            "beauty", "Amazon Beauty", "Beauty.txt", None, (22363, 12101, 198502)
        ),  # S3-Rec paper
        CatalogueEntry(
            name="ml-latest-small",
            description="MovieLens latest-small raw ratings (CSV), 5-core applied here",
            path="raw/ml-latest-small/ratings.csv",
            config={"reader": {"name": "csv"}},
            url=_GROUPLENS + "ml-latest-small.zip",
            archive_member="ml-latest-small/ratings.csv",
            sha256="aa289ca83157595d0df6aea1be6a4ded676ddc4385472e8313a8ed9805352646",
            expected={"users": 610, "items": 3650, "actions": 90274},
            notes="GroupLens; research use only, see README.txt. A development set, not for published results.",
        ),
        CatalogueEntry(
            name="ml-1m",
            description="MovieLens 1M raw ratings (user::item::rating::timestamp), 5-core applied here",
            path="ml-1m/ratings.dat",
            config={"reader": {"name": "movielens_dat"}},
            url=_GROUPLENS + "ml-1m.zip",
            archive_member="ml-1m/ratings.dat",
            notes="Paper Table 2 lists 6,041 / 3,417 / 999,611 (RecBole 5-core; its counts include the "
            "padding id); not verified here since the file is not in the shared data. "
            "GroupLens terms: research use only, no redistribution.",
        ),
        CatalogueEntry(
            name="ml-100k",
            description="MovieLens 100K (u.data, tab separated, no header)",
            path="ml-100k/u.data",
            config={
                "reader": {
                    "name": "csv",
                    "delimiter": "\t",
                    "header": False,
                    "names": ["user", "item", "rating", "timestamp"],
                },
            },
            url=_GROUPLENS + "ml-100k.zip",
            archive_member="ml-100k/u.data",
            notes="GroupLens terms: research use only.",
        ),
        CatalogueEntry(
            name="ml-20m",
            description="MovieLens 20M raw ratings (CSV)",
            path="ml-20m/ratings.csv",
            config={"reader": {"name": "csv"}},
            url=_GROUPLENS + "ml-20m.zip",
            archive_member="ml-20m/ratings.csv",
            notes="GroupLens terms: research use only.",
        ),
        CatalogueEntry(
            name="steam",
            description="Steam reviews as a RecBole atomic file",
            path="steam/steam.inter",
            config={"reader": {"name": "recbole"}},
            notes="No direct public URL: get steam.inter from RUCAIBox/RecSysDatasets (Google Drive links "
            "in its README) and place it at the path shown. Original data: Kang & McAuley, ICDM 2018.",
        ),
    )
}


def data_dir(config: DataConfig) -> Path:
    """The data directory: ``data.data_dir``, else ``$ECLSR_DATA_DIR``, else ``./data``."""
    return Path(config.data_dir or os.environ.get(DATA_DIR_ENV) or "data").expanduser()


def lookup(name: str) -> CatalogueEntry:
    """The catalogue entry ``name``; an unknown name lists the valid ones and the closest."""
    if name in CATALOGUE:
        return CATALOGUE[name]
    close = difflib.get_close_matches(name, list(CATALOGUE), n=3)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    msg = f"unknown dataset {name!r}.{hint} Catalogue names: {', '.join(sorted(CATALOGUE))}; or give a file path."
    raise DataError(msg)


def entry_file(entry: CatalogueEntry, config: DataConfig) -> Path:
    """Where ``entry`` lives; a missing file is an error saying how to obtain it."""
    root = data_dir(config)
    path = root / entry.path
    if path.is_file():
        return path
    how = (
        f"Download it with `eclsr data download {entry.name} --data-dir {root}` (from {entry.url})"
        if entry.url
        else f"Obtain it by hand: {entry.notes}"
    )
    msg = (
        f"dataset {entry.name!r} expects the file {str(path)!r}, which does not exist (data directory "
        f"{str(root)!r}, from data.data_dir, ${DATA_DIR_ENV} or ./data). {how}, or point "
        f"data.data_dir / ${DATA_DIR_ENV} at the folder that holds {entry.path!r}."
    )
    raise DataError(msg)


def with_entry_defaults(entry: CatalogueEntry, config: DataConfig) -> DataConfig:
    """``config`` with the entry's options filled in where the recipe did not set them."""
    updates = {k: v for k, v in entry.config.items() if k not in config.model_fields_set}
    return config.model_copy(update=updates)
