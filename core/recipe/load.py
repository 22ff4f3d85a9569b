"""Reading, overriding and validating recipes. Safe parsing only: TOML, or YAML's safe loader."""

from __future__ import annotations

import copy
import difflib
import re
import tomllib
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from eclsr.errors import RecipeError, RecipeMigrationWarning
from eclsr.recipe.migrate import migrate
from eclsr.recipe.schema import recipe_model
from eclsr.registry.manager import Registries, collect_registries, load_plugin_file

_INDEX = re.compile(r"^(?P<key>[^\[\]]+)((?:\[\d+\])*)$")
#: A recipe is a few kilobytes; these bounds stop a hostile file (a "billion laughs" alias bomb,
#: a huge document) from hanging or exhausting memory when it is read, copied or written back.
MAX_RECIPE_BYTES = 1 << 20
MAX_RECIPE_NODES = 100_000


def read_recipe_file(path: str | Path) -> dict[str, Any]:
    """Parse a TOML or YAML recipe file into a dict (no validation yet)."""
    file = Path(path)
    if not file.is_file():
        msg = f"recipe file {str(file)!r} does not exist. Check the path (recipes live under recipes/)."
        raise RecipeError(msg)
    text = _read_text(file)
    try:
        if file.suffix == ".toml":
            _check_size(text, str(file))
            data: object = tomllib.loads(text)
        elif file.suffix in (".yaml", ".yml"):
            data = parse_yaml(text, str(file))
        else:
            msg = f"{file}: unknown recipe format {file.suffix!r}; use a .toml, .yaml or .yml file."
            raise RecipeError(msg)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        msg = f"{file}: not valid {file.suffix.lstrip('.').upper()}: {exc}"
        raise RecipeError(msg) from None
    except RecursionError:
        msg = (
            f"{file}: nested too deeply to be a recipe. Check the file's brackets and indentation."
        )
        raise RecipeError(msg) from None
    if not isinstance(data, dict):
        msg = (
            f"{file}: a recipe must be a table/mapping at the top level, got {type(data).__name__}."
        )
        raise RecipeError(msg)
    return data


def parse_yaml(text: str, source: str) -> object:
    """Parse YAML with the safe loader, bounded in size and in alias expansion.

    Raises:
        RecipeError: not YAML, too large, or expanding (through ``&anchor``/``*alias``) into more
            than :data:`MAX_RECIPE_NODES` values.
    """
    _check_size(text, source)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        msg = f"{source}: not valid YAML: {exc}"
        raise RecipeError(msg) from None
    except RecursionError:
        msg = f"{source}: nested too deeply to be a recipe. Check its brackets and indentation."
        raise RecipeError(msg) from None
    if _expanded_size(data, {}) > MAX_RECIPE_NODES:
        msg = (
            f"{source}: its aliases (*name) expand to more than {MAX_RECIPE_NODES} values, far more "
            "than any recipe holds (a YAML alias bomb?). Write the values out, or reuse fewer anchors."
        )
        raise RecipeError(msg)
    return data


def _check_size(text: str, source: str) -> None:
    if len(text) > MAX_RECIPE_BYTES:
        msg = f"{source}: {len(text)} characters, more than a recipe may hold ({MAX_RECIPE_BYTES}). Check that this is a recipe file."
        raise RecipeError(msg)


def _expanded_size(node: object, memo: dict[int, int]) -> int:
    """Values in ``node`` once every alias is expanded; shared nodes are counted once per use.

    Memoised by identity, so the cost is linear in the parsed (unexpanded) document.
    """
    if not isinstance(node, (dict, list)):
        return 1
    key = id(node)
    if key not in memo:
        memo[key] = 0  # a recursive alias counts as a leaf instead of looping forever
        children = node.values() if isinstance(node, dict) else node
        total = 1
        for child in children:
            total += _expanded_size(child, memo)
            if total > MAX_RECIPE_NODES:
                break  # already too big: no need to count the rest
        memo[key] = total
    return memo[key]


def _read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        msg = f"{file}: not UTF-8 text. Save the recipe as UTF-8."
        raise RecipeError(msg) from None
    except OSError as exc:
        msg = f"{file}: cannot be read ({exc.strerror})."
        raise RecipeError(msg) from None


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with ``key.sub[2].leaf=value`` overrides applied.

    Values are parsed as YAML scalars/flow collections (``0.5``, ``true``, ``[5, 10]``,
    ``{name: crop}``); anything else is a string. Validation happens afterwards, as for a file.
    """
    result = copy.deepcopy(dict(data))
    for override in overrides:
        path, sep, raw = override.partition("=")
        if not sep or not path.strip():
            msg = f"--set {override!r}: expected KEY=VALUE, e.g. --set train.epochs=2"
            raise RecipeError(msg)
        _assign(result, _split_path(path.strip(), override), _parse_value(raw), override)
    return result


def _split_path(path: str, override: str) -> list[str | int]:
    parts: list[str | int] = []
    for piece in path.split("."):
        match = _INDEX.match(piece)
        if not match:
            msg = (
                f"--set {override!r}: cannot read the key path {path!r}; write e.g. heads[1].weight"
            )
            raise RecipeError(msg)
        parts.append(match.group("key"))
        parts += [int(i) for i in re.findall(r"\[(\d+)\]", piece)]
    return [int(p) if isinstance(p, str) and p.isdigit() else p for p in parts]


def _parse_value(raw: str) -> Any:
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        return raw
    except RecursionError:
        msg = f"--set value {raw[:40]!r}...: nested too deeply to be a recipe value."
        raise RecipeError(msg) from None
    if _expanded_size(value, {}) > MAX_RECIPE_NODES:  # anchors/aliases inside one --set value
        msg = f"--set value {raw[:40]!r}...: its aliases expand to more than {MAX_RECIPE_NODES} values (a YAML alias bomb?)."
        raise RecipeError(msg)
    return value


def _assign(node: Any, path: list[str | int], value: Any, override: str) -> None:
    for position, key in enumerate(path[:-1]):
        nxt = path[position + 1]
        if isinstance(key, int):
            if not isinstance(node, list) or key >= len(node):
                msg = f"--set {override!r}: index {key} is out of range (the list has {len(node) if isinstance(node, list) else 0} items)"
                raise RecipeError(msg)
            node = node[key]
        else:
            if not isinstance(node, dict):
                msg = f"--set {override!r}: {key!r} is not inside a table"
                raise RecipeError(msg)
            node = node.setdefault(key, [] if isinstance(nxt, int) else {})
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            msg = f"--set {override!r}: index {last} is out of range"
            raise RecipeError(msg)
        node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        msg = f"--set {override!r}: {last!r} is not inside a table"
        raise RecipeError(msg)


def validate_recipe(
    data: Mapping[str, Any],
    source: str = "<recipe>",
    base_dir: Path | None = None,
    *,
    load_plugins: bool = True,
) -> BaseModel:
    """Validate a recipe dict; raise :class:`RecipeError` listing every problem.

    Plugin files named in ``plugins`` are loaded first so their components are valid, unless
    ``load_plugins`` is False: a recipe read from a run directory someone else wrote must not
    run code, so its ``plugins`` list is kept as a record but nothing in it is imported.
    """
    plugins = data.get("plugins") if load_plugins else None
    for plugin in plugins if isinstance(plugins, list) else []:  # a wrong type is reported below
        if isinstance(plugin, str):
            load_plugin_file(Path(base_dir or ".") / plugin)
    regs = collect_registries()
    data, notes = migrate(data)
    for note in notes:
        warnings.warn(f"{source}: {note}", RecipeMigrationWarning, stacklevel=2)
    try:
        return recipe_model(regs).model_validate(data)
    except ValidationError as exc:
        problems = [format_error(err, data, regs) for err in exc.errors()]
        count = len(problems)
        header = f"{source}: {count} problem{'s' if count != 1 else ''} in the recipe"
        raise RecipeError(
            header + ":\n" + "\n".join(f"  - {p}" for p in problems), problems
        ) from None


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> BaseModel:
    """Read a recipe file, apply ``--set`` overrides and validate it (one call for Python users)."""
    file = Path(path)
    return validate_recipe(recipe_data(file, overrides), source=str(file), base_dir=file.parent)


def recipe_data(path: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """A recipe file as a dict with ``--set`` overrides and its default ``name`` (not validated)."""
    file = Path(path)
    data = apply_overrides(read_recipe_file(file), overrides)
    data.setdefault(
        "name",
        file.stem if file.parent.name in ("recipes", "") else f"{file.parent.name}-{file.stem}",
    )
    return data


def format_error(error: Mapping[str, Any], data: Mapping[str, Any], regs: Registries) -> str:
    """One line for one pydantic error: location, what was expected, the valid choices."""
    location = readable_location(error["loc"], data)
    kind = error["type"]
    if kind == "union_tag_invalid":
        tag = str(error["ctx"]["tag"])
        expected = [t.strip(" '") for t in str(error["ctx"]["expected_tags"]).split(",")]
        close = difflib.get_close_matches(tag, expected, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        wrong_kind = _other_kind_hint(tag, expected, regs)
        return f"{location}.name: unknown name {tag!r}.{hint}{wrong_kind} Valid choices: {', '.join(expected)}."
    if kind == "union_tag_not_found":
        return f"{location}: missing `name`; say which component this is."
    if kind == "extra_forbidden":
        return f"{location}: unknown field. Remove it or check its spelling; `eclsr schema` lists the valid fields."
    if kind == "literal_error":
        return f"{location}: {error['msg']}."
    value = error.get("input")
    shown = f" (got {value!r})" if not isinstance(value, (dict, list)) and value is not None else ""
    return f"{location}: {error['msg']}{shown}."


def _other_kind_hint(tag: str, expected: list[str], regs: Registries) -> str:
    for registry in (regs.mild, regs.invasive, regs.encoders, regs.heads):
        if tag in registry and tag not in expected:
            return f" {tag!r} is a {registry.kind}, which does not belong here."
    return ""


def readable_location(loc: Sequence[str | int], data: Any) -> str:
    """``('heads', 3, 'rid', 'augmentation', 'crop', 'ratio')`` → ``heads[3].augmentation.ratio``.

    Discriminator tags that pydantic inserts after a union field are dropped by walking the input.
    """
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            continue
        if isinstance(node, dict) and part not in node and node.get("name") == part:
            continue  # a union tag, not a key of the input
        if isinstance(node, dict) and part not in node and part.startswith("function-"):
            continue
        out += f".{part}" if out else part
        node = node.get(part) if isinstance(node, dict) else None
    return out or "<recipe>"
