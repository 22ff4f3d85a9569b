"""eclsr: contrastive sequential recommendation from parts.

Programmatic entry points (:func:`load_recipe`, :func:`run`, ...) load on first use; the names of
:mod:`eclsr.api`, the component author's API, are re-exported here too.
"""

from __future__ import annotations

import sys as _sys


def _quiet_ctrl_c_while_the_cli_starts() -> None:
    """For the ``eclsr`` command only: Ctrl-C while torch is imported prints one line, no traceback.

    Importing this package takes seconds (torch), before the CLI's own handler runs. A library
    must not change how its host program reports errors, so this applies only when the process
    is the ``eclsr`` command (console script or ``python -m eclsr``), and only to KeyboardInterrupt.
    """
    argv = getattr(_sys, "orig_argv", [])
    is_cli = _sys.argv[:1] and _sys.argv[0].rsplit("/", 1)[-1] == "eclsr"
    if not (is_cli or argv[1:3] == ["-m", "eclsr"]):
        return
    previous = _sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, trace: object) -> None:
        if issubclass(kind, KeyboardInterrupt):
            _sys.stderr.write("interrupted\n")  # the exit status stays the SIGINT one (130)
        else:
            previous(kind, value, trace)  # type: ignore[arg-type]

    _sys.excepthook = hook


_quiet_ctrl_c_while_the_cli_starts()

from eclsr.api import *  # noqa: E402, F403  (the component author's API, also at the top level)
from eclsr.api import __all__ as _api_names  # noqa: E402

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
