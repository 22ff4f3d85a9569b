"""Every hook is documented in docs/plugins.md under a heading with its exact signature.

The signatures are derived from ``eclsr.registry.hookspecs`` with ``inspect``, so adding a hook (or a hook
argument) without updating the guide fails here (datasette's test_docs idea).
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from eclsr.registry import hookspecs

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
HEADING = re.compile(r"^#{2,4} `(?P<call>eclsr_\w+\([^)]*\))`\s*$", re.M)


def hook_signatures() -> dict[str, str]:
    """``{name: "name(arg, ...)"}`` for every hookspec in ``eclsr.registry.hookspecs``."""
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    hooks = {
        name: function
        for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
        if name.startswith("eclsr_") and hasattr(function, marker)
    }
    return {
        name: f"{name}({', '.join(inspect.signature(function).parameters)})"
        for name, function in hooks.items()
    }


SIGNATURES = hook_signatures()


def documented() -> list[str]:
    return [match["call"] for match in HEADING.finditer(GUIDE.read_text(encoding="utf-8"))]


def test_hookspecs_are_found():
    assert "eclsr_register_augmentations" in SIGNATURES
    assert SIGNATURES["eclsr_register_heads"] == "eclsr_register_heads(register)"


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_hook_has_a_heading_with_its_signature(name):
    signature = SIGNATURES[name]
    assert signature in documented(), (
        f"docs/plugins.md has no heading for hook {name}: add a section titled\n"
        f"### `{signature}`\nunder 'Hook reference', describing what to register and how."
    )


def test_headings_name_only_existing_hooks():
    stale = sorted(set(documented()) - set(SIGNATURES.values()))
    assert not stale, f"docs/plugins.md documents hooks that do not exist (or changed): {stale}"


def test_each_hook_is_documented_once():
    calls = documented()
    assert len(calls) == len(set(calls))


ARCHITECTURE = GUIDE.parent / "architecture.md"
WING_ROW = re.compile(r"^\| `(?P<wing>\w+)` \| (?P<modules>[^|]+) \|", re.M)


def documented_wings() -> dict[str, set[str]]:
    """``{wing: {module, ...}}`` from the table of docs/architecture.md."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    return {
        m["wing"]: {name.strip(" `") for name in m["modules"].split(",")}
        for m in WING_ROW.finditer(text)
    }


def test_architecture_doc_lists_every_wing_and_module():
    core = GUIDE.parents[1] / "core"
    actual = {
        package.name: {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
        for package in core.iterdir()
        if (package / "__init__.py").is_file()
    }
    assert documented_wings() == actual, (
        "docs/architecture.md's wing table is out of date: list every module of every wing"
    )
