"""The ``data`` section of a recipe: which data, how it is read, preprocessed and split.

Defaults follow the paper's data pipeline (S3-Rec preprocessing, which ECL-SR's Amazon files
come from): every rating kept, duplicates kept, iterative user/item 5-core, chronological order
with ties kept in file order, leave-one-out split.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Preprocessing fields that change the prepared data (they key the cache and fill the protocol).
PREPROCESSING_FIELDS = (
    "rating_threshold",
    "time_window",
    "dedupe",
    "k_core",
    "item_k_core",
    "tie_break",
    "min_length",
    "short_sequences",
    "split",
    "time_split",
)


class DataConfig(BaseModel):
    """Which data to train on and how to cut it into sequences."""

    # allow_inf_nan=False: inf/nan pass `gt=0` and similar checks, then poison training.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    dataset: str = Field(
        "synthetic",
        description="A catalogue name (toys, sports, yelp, ...), 'synthetic', or a path to a data file.",
    )
    data_dir: str | None = Field(
        None, description="Folder holding named datasets; default: $ECLSR_DATA_DIR, else ./data."
    )
    max_len: int = Field(
        50, ge=2, le=4096, description="Maximum sequence length L (most recent items kept)."
    )
    # Bounded: the generator allocates arrays of these sizes at once (a typo of 10**12 must be
    # refused here, not end in an allocator failure).
    synthetic_users: int = Field(
        2000, ge=10, le=10_000_000, description="Users of the synthetic dataset."
    )
    synthetic_items: int = Field(
        500, ge=10, le=10_000_000, description="Items of the synthetic dataset."
    )
    reader: Any = Field(
        None,
        description='How to read the file: a reader component, e.g. {name = "csv", delimiter = ";"} '
        "(sequence, pairs, csv, recbole, movielens_dat, parquet, or a plugin's); None chooses one by "
        "file suffix and content, with its defaults.",
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Tabular formats: role (user, item, timestamp, rating) → column name. Unnamed roles "
        "are found by common names (userId, movieId, timestamp, rating, ...).",
    )
    rating_threshold: float | None = Field(
        None,
        description="Keep interactions with rating >= this; None keeps all (S3-Rec uses 0, i.e. all).",
    )
    time_window: tuple[float, float] | None = Field(
        None,
        description="Keep interactions with start <= timestamp <= end (Unix seconds); None keeps all.",
    )
    dedupe: Literal["all", "first", "last"] = Field(
        "all",
        description="Repeated (user, item) pairs: keep all (paper), or only the first / last in time.",
    )
    k_core: int = Field(
        5,
        ge=0,
        description="Iterative k-core: drop users and items with fewer than k interactions until none "
        "remain (5 in the paper; 0 or 1 disables). The S3-Rec files are already 5-core.",
    )
    item_k_core: int | None = Field(
        None, ge=0, description="Item threshold of the k-core; None: same as k_core."
    )
    tie_break: Literal["file_order", "item_id"] = Field(
        "file_order",
        description="Order of a user's interactions with equal timestamps: as they appear in the file "
        "(stable sort, as S3-Rec's Python sort) or by ascending raw item id.",
    )
    split: Literal["leave_one_out", "time"] = Field(
        "leave_one_out",
        description="leave_one_out: last item tests, second-to-last validates (paper). time: global "
        "time cut-offs (see time_split), stored as SequenceDataset.split_points.",
    )
    time_split: tuple[float, float] = Field(
        (0.8, 0.9),
        description="split='time': quantiles of all timestamps where validation and test periods begin.",
    )
    min_length: int = Field(
        3,
        ge=1,
        description="Fewest interactions a user needs after filtering (3 = train + valid + test).",
    )
    short_sequences: Literal["error", "drop"] = Field(
        "error",
        description="Users shorter than min_length: stop with an error, or drop them (counted).",
    )
    cache: bool = Field(True, description="Cache the prepared arrays on disk and reuse them.")
    cache_dir: str | None = Field(
        None, description="Cache folder; default: $ECLSR_CACHE_DIR, else ~/.cache/eclsr/datasets."
    )

    @model_validator(mode="after")
    def _check_ranges(self) -> DataConfig:
        if self.time_window is not None and self.time_window[0] > self.time_window[1]:
            msg = f"time_window start {self.time_window[0]} is after its end {self.time_window[1]}."
            raise ValueError(msg)
        low, high = self.time_split
        if not 0.0 < low <= high < 1.0:
            msg = f"time_split must be two quantiles 0 < valid <= test < 1, got {self.time_split}."
            raise ValueError(msg)
        return self

    def preprocessing(self) -> dict[str, Any]:
        """The options that shape the prepared data, as plain JSON values."""
        return self.model_dump(mode="json", include=set(PREPROCESSING_FIELDS))
