"""eclsr: contrastive sequential recommendation from parts.

Programmatic entry points (:func:`load_recipe`, :func:`run`, ...) load on first use; the names of
:mod:`eclsr.api`, the component author's API, are re-exported here too.
"""

from __future__ import annotations

from eclsr.api import *  # noqa: F403  (the component author's API, also at the top level)
from eclsr.api import __all__ as _api_names

__version__ = "0.1.0"

_LAZY = {
    "load_recipe": "eclsr.recipe.load",
    "validate_recipe": "eclsr.recipe.load",
    "run": "eclsr.engine.train",
    "Model": "eclsr.engine.model",
    "load_dataset": "eclsr.data",
    "registries": "eclsr.registry.manager",
}


def __getattr__(name: str) -> object:
    """Heavier entry points load on first use, so ``import eclsr`` stays cheap for plugins."""
    import importlib

    if name not in _LAZY:
        return getattr(importlib.import_module("eclsr.api"), name)  # registered config classes

    module = importlib.import_module(_LAZY[name])
    return getattr(module, "collect_registries" if name == "registries" else name)


__all__ = sorted({*_api_names, *_LAZY, "__version__"})
