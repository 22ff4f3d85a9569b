"""RecBole atomic ``.inter`` files: tab separated with a typed header (``user_id:token`` ...).

Format of RecBole (Zhao et al., CIKM 2021), which the ECL-SR authors' code reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from eclsr.api import Interactions, ReaderConfig, hookimpl, read_delimited


class RecBoleReaderConfig(ReaderConfig):
    """RecBole ``.inter``: header ``user_id:token<TAB>item_id:token<TAB>...``, tab separated."""

    name: Literal["recbole"] = "recbole"
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Role (user, item, timestamp, rating) → field name; default user_id, item_id, timestamp, rating.",
    )
    extensions = (".inter",)

    @classmethod
    def sniff(cls, head: list[str]) -> float:  # noqa: D102
        return 0.9 if head and ":token" in head[0] else 0.3

    def build(self, ctx: object = None) -> RecBoleReader:  # noqa: D102
        return RecBoleReader(self)


class RecBoleReader:
    """Reads an atomic interaction file; fields other than the mapped ones are ignored."""

    def __init__(self, config: RecBoleReaderConfig) -> None:
        self.config = config

    def read(self, path: Path) -> Interactions:
        """Read ``path``."""
        return read_delimited(path, "\t", self.config.columns)


@hookimpl
def eclsr_register_readers(register: object) -> None:
    """Register the RecBole atomic-file reader."""
    register(RecBoleReaderConfig)  # type: ignore[operator]
