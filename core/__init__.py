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
    last_position,
    real_mask,
)
from eclsr.errors import DataError, EclsrError, PluginError, RecipeError, RegistryError
from eclsr.hookspecs import hookimpl
from eclsr.losses import full_softmax_cross_entropy
from eclsr.step import Batch, Step

__version__ = "0.1.0"

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
    "InvasiveAugmentation",
    "InvasiveAugmentationConfig",
    "MildAugmentation",
    "MildAugmentationConfig",
    "PluginError",
    "RecipeError",
    "RegistryError",
    "Step",
    "full_softmax_cross_entropy",
    "hookimpl",
    "last_position",
    "real_mask",
]
