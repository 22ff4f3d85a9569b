"""The public API for component authors: everything a plugin may import from eclsr.

Built-in plugins import only from here (and from ``eclsr`` itself), and a lint rule
(``tests/test_architecture.py``) keeps it so: a built-in is a worked example that a third-party
package can copy line for line. Anything not listed here is private and may move.

- Contracts: the config base classes a recipe holds, the runtime modules they build, the
  :class:`BuildContext` of ``build``, the :class:`Batch`/:class:`Step` a head sees, the reader
  contract.
- Tensor helpers for right-padded batches, seeded sampling, the fast dropout and the fused
  full-softmax loss (the same code the built-ins run).
- Reader helpers (reading lines, splitting rows, naming columns) for data-reader plugins.
- Every registered config class by its class name, e.g. ``eclsr.api.SASRecConfig``: looked up in
  the registries on first use, so core never imports a plugin module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eclsr.components.configs import (
    AugmentationConfig,
    BuildContext,
    ComponentConfig,
    EncoderConfig,
    HeadConfig,
    InvasiveAugmentationConfig,
    MildAugmentationConfig,
    StepShape,
)
from eclsr.components.readers import Interactions, Reader, ReaderConfig
from eclsr.components.runtime import (
    AugmentedBatch,
    Encoder,
    Head,
    InvasiveAugmentation,
    MildAugmentation,
)
from eclsr.components.step import Batch, Step
from eclsr.data.parsing import (
    interactions_from_columns,
    pick_columns,
    read_delimited,
    read_lines,
    require_file,
    split_rows,
    to_numbers,
)
from eclsr.errors import DataError, EclsrError, PluginError, RecipeError, RegistryError
from eclsr.ops.layers import FastDropout, keep_mask
from eclsr.ops.losses import best_items, full_softmax_cross_entropy
from eclsr.ops.positions import (
    gather_positions,
    last_k_positions,
    last_position,
    real_mask,
    selected_positions,
)
from eclsr.ops.sampling import randint_below, window_length
from eclsr.registry.hookspecs import hookimpl

if TYPE_CHECKING:  # slot names for nested component fields, e.g. ``view: "MildSlot"``
    pass


def __getattr__(name: str) -> type:
    """``eclsr.api.SASRecConfig`` and friends: a registered config class by its class name."""
    if name.startswith("_") or not name.endswith("Config"):  # e.g. `import *` probing dunders
        msg = f"module 'eclsr.api' has no attribute {name!r}"
        raise AttributeError(msg)
    from eclsr.registry.manager import collect_registries

    for registry in collect_registries().all():
        for cls in registry:
            if cls.__name__ == name:
                return cls
    msg = f"module 'eclsr.api' has no attribute {name!r}"
    raise AttributeError(msg)


__all__ = [
    "AugmentationConfig",
    "AugmentedBatch",
    "Batch",
    "BuildContext",
    "ComponentConfig",
    "DataError",
    "EclsrError",
    "Encoder",
    "EncoderConfig",
    "FastDropout",
    "Head",
    "HeadConfig",
    "Interactions",
    "InvasiveAugmentation",
    "InvasiveAugmentationConfig",
    "MildAugmentation",
    "MildAugmentationConfig",
    "PluginError",
    "Reader",
    "ReaderConfig",
    "RecipeError",
    "RegistryError",
    "Step",
    "StepShape",
    "best_items",
    "full_softmax_cross_entropy",
    "gather_positions",
    "hookimpl",
    "interactions_from_columns",
    "keep_mask",
    "last_k_positions",
    "last_position",
    "pick_columns",
    "randint_below",
    "read_delimited",
    "read_lines",
    "real_mask",
    "require_file",
    "selected_positions",
    "split_rows",
    "to_numbers",
    "window_length",
]
