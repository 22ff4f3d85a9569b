"""eclsr: contrastive sequential recommendation from parts.

The public API for plugin authors and for programmatic experiments. Plugins import only from here.
"""

from __future__ import annotations

from eclsr.components import (
    AugmentationConfig,
    AugmentedBatch,
    BuildContext,
    ComponentConfig,
    Encoder,
    EncoderConfig,
    Head,
    HeadConfig,
    InvasiveAugmentation,
    InvasiveAugmentationConfig,
    MildAugmentation,
    MildAugmentationConfig,
    gather_positions,
    last_k_positions,
    last_position,
    real_mask,
    selected_positions,
)
from eclsr.errors import DataError, EclsrError, PluginError, RecipeError, RegistryError
from eclsr.hookspecs import hookimpl
from eclsr.losses import best_items, full_softmax_cross_entropy
from eclsr.step import Batch, Step

__version__ = "0.1.0"

_LAZY = {
    "load_recipe": "eclsr.recipe",
    "validate_recipe": "eclsr.recipe",
    "run": "eclsr.train",
    "Model": "eclsr.model",
    "load_dataset": "eclsr.datasets",
    "registries": "eclsr.plugin_manager",
}


def __getattr__(name: str) -> object:
    """Heavier entry points load on first use, so ``import eclsr`` stays cheap for plugins."""
    if name not in _LAZY:
        msg = f"module 'eclsr' has no attribute {name!r}"
        raise AttributeError(msg)
    import importlib

    module = importlib.import_module(_LAZY[name])
    return getattr(module, "collect_registries" if name == "registries" else name)


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
    "Head",
    "HeadConfig",
    "Model",
    "InvasiveAugmentation",
    "InvasiveAugmentationConfig",
    "MildAugmentation",
    "MildAugmentationConfig",
    "PluginError",
    "RecipeError",
    "RegistryError",
    "Step",
    "best_items",
    "full_softmax_cross_entropy",
    "gather_positions",
    "hookimpl",
    "last_k_positions",
    "last_position",
    "load_dataset",
    "load_recipe",
    "real_mask",
    "registries",
    "run",
    "selected_positions",
    "validate_recipe",
]
