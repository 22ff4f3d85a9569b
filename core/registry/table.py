"""Name → config-class registries, one per component kind."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from eclsr.errors import RegistryError


@dataclass(frozen=True)
class Origin:
    """Where a registered component came from."""

    plugin: str
    distribution: str | None = None
    version: str | None = None
    #: The ``eclsr`` entry-point name of an installed plugin (what blocking also accepts).
    entry_point: str | None = None

    def __str__(self) -> str:
        dist = f" ({self.distribution} {self.version})" if self.distribution else ""
        return f"{self.plugin}{dist}"


@dataclass(frozen=True)
class Entry:
    """One registered component: its config class and its origin."""

    name: str
    cls: type
    origin: Origin


class Registry:
    """Components of one kind, keyed by their ``name`` literal."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, cls: type, origin: Origin) -> None:
        """Add ``cls`` under its name; a duplicate name is an error naming both origins."""
        name = component_name(cls)
        if name in self._entries:
            first = self._entries[name].origin
            msg = (
                f"{self.kind} {name!r} is registered twice: by {first} and by {origin}. "
                f"Uninstall or block one of them (ECLSR_DISABLED_PLUGINS=...), or register a new "
                f"name such as {name + '.v2'!r}."
            )
            raise RegistryError(msg)
        self._entries[name] = Entry(name, cls, origin)

    def get(self, name: str) -> type:
        """Return the config class for ``name``; unknown names list the valid ones."""
        if name not in self._entries:
            raise RegistryError(self.unknown_message(name))
        return self._entries[name].cls

    def unknown_message(self, name: str) -> str:
        """Explain that ``name`` is unknown, with the valid names and the closest matches."""
        close = difflib.get_close_matches(name, self.names(), n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        valid = ", ".join(repr(n) for n in self.names()) or "(none registered)"
        return f"unknown {self.kind} {name!r}.{hint} Valid {self.kind} names: {valid}."

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        """Registered entries, sorted by name."""
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[type]:
        return (e.cls for e in self.entries())

    def __len__(self) -> int:
        return len(self._entries)


def component_name(cls: type) -> str:
    """The registered name of a config class: the single value of its ``name: Literal[...]``."""
    fields: dict[str, Any] = getattr(cls, "model_fields", {})
    field = fields.get("name")
    default = getattr(field, "default", None)
    if not isinstance(default, str):
        msg = (
            f"{cls.__qualname__} cannot be registered: it needs a field "
            f"`name: Literal['your_name'] = 'your_name'`."
        )
        raise RegistryError(msg)
    return default
