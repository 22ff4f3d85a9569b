"""Plugin discovery: built-ins by walking ``eclsr.plugins``, then the ``eclsr`` entry points.

Environment switches:
    ``ECLSR_DISABLE_PLUGIN_AUTOLOAD=1``: do not load entry-point plugins (built-ins still load).
    ``ECLSR_DISABLED_PLUGINS=a,b``: block plugins by name (entry-point name or module name).
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import os
import pkgutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pluggy

from eclsr.components.configs import (
    EncoderConfig,
    HeadConfig,
    InvasiveAugmentationConfig,
    MildAugmentationConfig,
)
from eclsr.components.readers import ReaderConfig
from eclsr.errors import PluginError
from eclsr.registry import hookspecs
from eclsr.registry.table import Origin, Registry

BUILTIN_PACKAGES = (
    "eclsr.plugins.encoders",
    "eclsr.plugins.augment",
    "eclsr.plugins.heads",
    "eclsr.plugins.readers",
)
AUTOLOAD_ENV = "ECLSR_DISABLE_PLUGIN_AUTOLOAD"
BLOCK_ENV = "ECLSR_DISABLED_PLUGINS"


@dataclass
class Registries:
    """Every registry, filled from the hooks of one plugin manager."""

    encoders: Registry
    mild: Registry
    invasive: Registry
    heads: Registry
    readers: Registry
    #: The recipe model built from these registries (see :func:`eclsr.recipe.schema.recipe_model`).
    recipe_model: type | None = field(default=None, repr=False)

    def all(self) -> list[Registry]:
        """The registries in display order."""
        return [self.encoders, self.mild, self.invasive, self.heads, self.readers]


def blocked_names() -> set[str]:
    """Plugin names listed in ``ECLSR_DISABLED_PLUGINS``."""
    return {n.strip() for n in os.environ.get(BLOCK_ENV, "").split(",") if n.strip()}


def new_plugin_manager(autoload: bool | None = None) -> pluggy.PluginManager:
    """A fresh manager with the built-ins and (unless disabled) the entry-point plugins."""
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    blocked = blocked_names()
    for name in blocked:
        pm.set_blocked(name)  # entry-point names: never even imported
    for module in _builtin_modules():
        if not pm.is_blocked(module.__name__):
            pm.register(module, name=module.__name__)
    if autoload is None:
        autoload = not os.environ.get(AUTOLOAD_ENV)
    if autoload:
        try:
            pm.load_setuptools_entrypoints(hookspecs.PROJECT_NAME)
        except Exception as exc:  # a broken third-party package must not look like our bug
            msg = f"an installed eclsr plugin failed to load: {exc!r}. Fix or uninstall it, or set {AUTOLOAD_ENV}=1."
            raise PluginError(msg) from exc
    _block_by_module(pm, blocked)
    _check_pending(pm)
    return pm


def _block_by_module(pm: pluggy.PluginManager, blocked: set[str]) -> None:
    """Unregister plugins blocked by module name (what ``eclsr plugins`` shows); refuse unknown names.

    An entry-point plugin is registered under its entry-point name, so ``set_blocked`` alone
    misses its module name. A name matching no plugin at all is an error, not a silent no-op:
    the user meant to switch something off.
    """
    if not blocked:
        return
    known = {m.__name__ for m in _builtin_modules()}
    known |= {ep.name for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT_NAME)}
    for name, plugin in list(pm.list_name_plugin()):
        if plugin is None:  # a blocked name's placeholder, not a plugin
            continue
        module = getattr(plugin, "__name__", name)
        known |= {name, module}
        if module in blocked:
            pm.unregister(plugin)
    unknown = sorted(blocked - known)
    if unknown:
        msg = (
            f"{BLOCK_ENV} names {', '.join(repr(u) for u in unknown)}, which is no installed "
            "plugin: use an entry-point name or a module name as `eclsr plugins` shows them "
            f"(e.g. 'eclsr.plugins.augment.crop'), or remove it from {BLOCK_ENV}."
        )
        raise PluginError(msg)


@functools.cache
def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager (built on first use, never at import)."""
    return new_plugin_manager()


def load_plugin_file(path: str | Path, pm: pluggy.PluginManager | None = None) -> ModuleType:
    """Import a bare ``.py`` file and register it as a plugin (``--plugin`` / ``plugins = [...]``)."""
    pm = pm or get_plugin_manager()
    file = Path(path).expanduser().resolve()
    if not file.is_file() or file.suffix != ".py":
        msg = f"plugin file {str(path)!r} does not exist or is not a .py file. Pass the path of a Python file that defines @eclsr.hookimpl functions."
        raise PluginError(msg)
    name = f"eclsr_local_plugin_{file.stem}"
    if pm.has_plugin(name):
        return pm.get_plugin(name)
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        msg = f"plugin file {str(file)!r} failed to import: {exc!r}"
        raise PluginError(msg) from exc
    pm.register(module, name=name)
    _check_pending(pm)
    collect_registries.cache_clear()
    return module


def _builtin_modules() -> list[ModuleType]:
    modules = []
    for package_name in BUILTIN_PACKAGES:
        package = importlib.import_module(package_name)
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
            if not info.name.startswith("_"):
                modules.append(importlib.import_module(f"{package_name}.{info.name}"))
    return modules


def _check_pending(pm: pluggy.PluginManager) -> None:
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        msg = (
            f"a plugin implements a hook that does not exist: {exc}. Hook names are: "
            + ", ".join(n for n in dir(hookspecs) if n.startswith("eclsr_"))
        )
        raise PluginError(msg) from exc


def _origin(pm: pluggy.PluginManager, plugin: object) -> Origin:
    name = pm.get_name(plugin) or repr(plugin)
    module = getattr(plugin, "__name__", name)
    for dist_plugin, dist in pm.list_plugin_distinfo():
        if dist_plugin is plugin:
            return Origin(module, dist.metadata["name"], dist.version, entry_point=name)
    if module.startswith("eclsr.plugins."):
        return Origin(module, "eclsr", _eclsr_version())
    return Origin(module)


def _eclsr_version() -> str:
    try:
        return importlib.metadata.version("eclsr")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def build_registries(pm: pluggy.PluginManager) -> Registries:
    """Call every plugin's hooks and sort what they register into the registries."""
    regs = Registries(
        Registry("encoder"),
        Registry("mild augmentation"),
        Registry("invasive augmentation"),
        Registry("head"),
        Registry("reader"),
    )
    hooks = {
        "eclsr_register_encoders": (EncoderConfig,),
        "eclsr_register_augmentations": (MildAugmentationConfig, InvasiveAugmentationConfig),
        "eclsr_register_heads": (HeadConfig,),
        "eclsr_register_readers": (ReaderConfig,),
    }
    for hook_name, allowed in hooks.items():
        hook = getattr(pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            origin = _origin(pm, impl.plugin)
            impl.function(register=functools.partial(_register, regs, allowed, origin, hook_name))
    return regs


def _register(
    regs: Registries, allowed: tuple[type, ...], origin: Origin, hook: str, cls: type
) -> None:
    if not (isinstance(cls, type) and issubclass(cls, allowed)):
        names = " or ".join(f"eclsr.{a.__name__}" for a in allowed)
        msg = f"{origin} registered {cls!r} from {hook}, but that hook takes subclasses of {names}."
        raise PluginError(msg)
    if issubclass(cls, EncoderConfig):
        regs.encoders.register(cls, origin)
    elif issubclass(cls, MildAugmentationConfig):
        regs.mild.register(cls, origin)
    elif issubclass(cls, InvasiveAugmentationConfig):
        regs.invasive.register(cls, origin)
    elif issubclass(cls, ReaderConfig):
        regs.readers.register(cls, origin)
    else:
        regs.heads.register(cls, origin)


@functools.cache
def collect_registries() -> Registries:
    """Registries of the process-wide plugin manager, slots resolved.

    Cached; reset when a file plugin loads.
    """
    from eclsr.registry.slots import resolve_slots

    regs = build_registries(get_plugin_manager())
    resolve_slots(regs)
    return regs
