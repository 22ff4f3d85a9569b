"""The ``data`` section of a recipe."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DataConfig(BaseModel):
    """Which data to train on and how to cut it into sequences."""

    model_config = ConfigDict(frozen=True, extra="forbid")

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
    synthetic_users: int = Field(2000, ge=10, description="Users of the synthetic dataset.")
    synthetic_items: int = Field(500, ge=10, description="Items of the synthetic dataset.")
