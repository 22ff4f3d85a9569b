"""Reader plugins: turn a file of some format into interactions."""

from __future__ import annotations

from typing import Any, ClassVar

from eclsr.components import ComponentConfig


class ReaderConfig(ComponentConfig):
    """Config of a data-file reader; ``build`` returns an object with ``read(path)``."""

    kind: ClassVar[str] = "reader"

    def build(self, ctx: Any = None) -> Any:  # noqa: D102
        return super().build(ctx)
