"""Lint rules for the architecture (run in CI with the rest of the suite).

- Plugins, built-in or the example package, import only eclsr's public API (``eclsr``,
  ``eclsr.api``) and their own package: a built-in is a worked example a third party can copy.
- core/ never imports a specific plugin module, and nothing but the CLI imports ``eclsr.cli``.
- The wings of core/ import each other in one direction only (no import loops, lazy imports
  inside functions included): ops → components → registry → data → recipe → engine → results →
  tune → cli.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = {"eclsr", "eclsr.api"}
#: Each wing may import only the wings listed before it (and the top-level modules).
LAYERS = ["ops", "components", "registry", "data", "recipe", "engine", "results", "tune", "cli"]
TOP_LEVEL = {"errors", "api", "testing", "__init__", "__main__"}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module an ``import``/``from`` statement anywhere in ``path`` names, with its line."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def private_imports(folder: Path, own_package: str) -> list[str]:
    """``file:line module`` for each eclsr import outside the public API and ``own_package``."""
    bad = []
    for path in sorted(folder.rglob("*.py")):
        for line, module in imported_modules(path):
            if not module.startswith("eclsr"):
                continue
            if module in PUBLIC or module.startswith(own_package):
                continue
            bad.append(f"{path.relative_to(folder)}:{line} imports {module}")
    return bad


def wing_of(module: str) -> str | None:
    """``eclsr.engine.train`` → ``engine``; top-level modules and plugins → None."""
    parts = module.split(".")
    if parts[0] != "eclsr" or len(parts) < 2 or parts[1] in TOP_LEVEL or parts[1] == "plugins":
        return None
    return parts[1]


def wing_edges() -> dict[tuple[str, str], str]:
    """``(from_wing, to_wing) → first place`` over every import in core/."""
    edges: dict[tuple[str, str], str] = {}
    for path in sorted((ROOT / "core").rglob("*.py")):
        parts = path.relative_to(ROOT / "core").parts
        if len(parts) < 2:
            continue  # top-level modules (api, testing, errors) may import any wing
        for line, module in imported_modules(path):
            target = wing_of(module)
            if target is not None and target != parts[0]:
                edges.setdefault((parts[0], target), f"core/{'/'.join(parts)}:{line}")
    return edges


def test_builtin_plugins_import_only_the_public_api():
    assert private_imports(ROOT / "plugins", "eclsr.plugins") == []


def test_the_example_package_imports_only_the_public_api():
    assert private_imports(ROOT / "examples", "eclsr_") == []


def test_the_lint_rule_catches_a_private_import(tmp_path):
    (tmp_path / "bad.py").write_text("from eclsr.engine.train import run\nimport eclsr.api\n")
    assert private_imports(tmp_path, "eclsr.plugins") == ["bad.py:1 imports eclsr.engine.train"]


def test_core_never_imports_a_plugin_module_and_only_the_cli_imports_the_cli():
    bad = []
    for path in sorted((ROOT / "core").rglob("*.py")):
        in_cli = path.parent.name == "cli" or path.name == "__main__.py"
        for line, module in imported_modules(path):
            if module.startswith("eclsr.plugins."):
                bad.append(f"{path}:{line} imports {module}")
            if module.startswith("eclsr.cli") and not in_cli:
                bad.append(f"{path}:{line} imports {module}")
    assert bad == []


@pytest.mark.parametrize(
    "edge", sorted(wing_edges().items()), ids=lambda e: f"{e[0][0]}->{e[0][1]}"
)
def test_wings_import_only_wings_below_them(edge):
    (source, target), where = edge
    assert LAYERS.index(target) < LAYERS.index(source), f"{where}: {source} imports {target}"


def test_every_wing_is_a_documented_package():
    for wing in LAYERS:
        init = ROOT / "core" / wing / "__init__.py"
        assert init.is_file() and ast.get_docstring(ast.parse(init.read_text())), wing


def module_graph() -> dict[str, set[str]]:
    """``module → modules of core it imports`` at run time (lazy imports included, type-only not)."""
    core = ROOT / "core"
    files = {}
    for path in core.rglob("*.py"):
        parts = list(path.relative_to(core).with_suffix("").parts)
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        files[".".join(["eclsr", *parts])] = path
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text())
        type_only = {
            id(sub)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for sub in ast.walk(node)
        }
        targets = set()
        for node in ast.walk(tree):
            if id(node) in type_only:
                continue
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (as a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_module_of_core_imports_itself_back():
    cycle = import_cycle(module_graph())
    assert cycle is None, "import loop: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle():
    assert import_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert import_cycle({"a": {"b"}, "b": set()}) is None


def test_every_registered_config_class_is_reachable_from_the_public_api(registries):
    import eclsr
    import eclsr.api

    for registry in registries.all():
        for cls in registry:
            assert getattr(eclsr.api, cls.__name__) is cls
            assert getattr(eclsr, cls.__name__) is cls
    with pytest.raises(AttributeError):
        eclsr.api.NoSuchConfig  # noqa: B018
    with pytest.raises(AttributeError):
        eclsr.api.no_such_helper  # noqa: B018
    assert set(eclsr.api.__all__) <= set(dir(eclsr.api))
