"""What is registered, as rows for ``eclsr plugins`` and for the run directory."""

from __future__ import annotations

from typing import Any

from eclsr.registry.manager import Registries, collect_registries

KIND_OF_REGISTRY = {
    "encoder": ("encoder", None),
    "mild augmentation": ("augmentation", "mild"),
    "invasive augmentation": ("augmentation", "invasive"),
    "head": ("head", None),
    "reader": ("reader", None),
}


def plugin_rows(regs: Registries | None = None) -> list[dict[str, Any]]:
    """One dict per registered component: kind, name, intensity, plugin, distribution, version."""
    regs = regs or collect_registries()
    rows = []
    for registry in regs.all():
        kind, intensity = KIND_OF_REGISTRY[registry.kind]
        for entry in registry.entries():
            rows.append(
                {
                    "kind": kind,
                    "name": entry.name,
                    "intensity": intensity,
                    "plugin": entry.origin.plugin,
                    "distribution": entry.origin.distribution,
                    "version": entry.origin.version,
                    "entry_point": entry.origin.entry_point,
                    "description": (entry.cls.__doc__ or "").strip().splitlines()[0]
                    if entry.cls.__doc__
                    else "",
                }
            )
    return rows
