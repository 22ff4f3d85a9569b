"""The search space: recipe paths with typed distributions, read from TOML and checked before
any trial runs.

A space file has one table per parameter, keyed by its recipe path::

    [params."train.lr"]
    type = "log-float"          # float | log-float | int | categorical
    low = 1e-4
    high = 1e-2

    [params."heads[1].weight"]
    type = "float"
    low = 0.0
    high = 1.0

    [params."encoder.layers"]
    type = "int"
    low = 1
    high = 3

    [params."train.optimizer"]
    type = "categorical"
    choices = ["adam", "adamw"]

Checks, each a located one-paragraph :class:`TuneError`: the table's shape and types; that the
path names a field of the recipe's schema (with the valid fields listed); that a range lies inside
the field's ``gt/ge/lt/le`` bounds; and that the recipe validates at the range's ends and at every
choice (which catches a float range on an integer field, and cross-field rules).
"""

from __future__ import annotations

import copy
import difflib
import math
import re
import tomllib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from eclsr.errors import RecipeError, TuneError

KINDS = ("float", "log-float", "int", "categorical")
_ALIASES = {"log_float": "log-float", "logfloat": "log-float", "loguniform": "log-float"}
_PIECE = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*)(?P<indices>(?:\[\d+\])*)$")
_KEYS = {
    "float": {"type", "low", "high", "step", "log"},
    "log-float": {"type", "low", "high"},
    "int": {"type", "low", "high", "step", "log"},
    "categorical": {"type", "choices"},
}

Part = str | int


@dataclass(frozen=True)
class Param:
    """One tuned recipe value: its path and its distribution.

    Attributes:
        path: the recipe path as written, e.g. ``heads[1].weight`` (also the Optuna parameter name).
        parts: the path split into keys and list indices.
        kind: ``float``, ``int`` or ``categorical`` (``log-float`` is ``float`` with ``log``).
        low, high: the inclusive range of ``float`` and ``int``.
        log: sample on a log scale.
        step: the grid step of a ``float`` or ``int`` range (None: continuous / 1).
        choices: the values of ``categorical``.
    """

    path: str
    parts: tuple[Part, ...]
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """Draw this parameter's value for an Optuna ``trial``."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.path, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(
                self.path, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.path, self.low, self.high, step=self.step, log=self.log)

    def probes(self) -> list[tuple[str, Any]]:
        """The values the recipe is validated at before any trial: the range's ends, or each choice."""
        if self.kind == "categorical":
            return [(f"choice {value!r}", value) for value in self.choices]
        cast = int if self.kind == "int" else float
        return [("low end", cast(self.low)), ("high end", cast(self.high))]


@dataclass(frozen=True)
class Space:
    """The parameters of a search space and the file they came from."""

    params: tuple[Param, ...]
    source: str = "<space>"

    def where(self, param: Param) -> str:
        """``space.toml, params."train.lr"``: where a message points."""
        return f'{self.source}, params."{param.path}"'

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """The space as plain data (stored with the study, shown by the report)."""
        return {
            p.path: {
                "type": "log-float" if p.kind == "float" and p.log else p.kind,
                **({"choices": list(p.choices)} if p.kind == "categorical" else {}),
                **({"low": p.low, "high": p.high} if p.kind != "categorical" else {}),
                **({"step": p.step} if p.step is not None else {}),
            }
            for p in self.params
        }


def read_space(path: str | Path) -> Space:
    """Read and shape-check a space file (paths are checked against a recipe by :func:`check_space`)."""
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        msg = f'space file {str(file)!r} does not exist. Write one TOML table per parameter: [params."train.lr"] type = "log-float", low = 1e-4, high = 1e-2.'
        raise TuneError(msg) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        msg = f"space file {str(file)!r} cannot be read as TOML: {exc}."
        raise TuneError(msg) from None
    return parse_space(data, str(file))


def parse_space(data: Mapping[str, Any], source: str = "<space>") -> Space:
    """A :class:`Space` from the parsed TOML of a space file."""
    extra = sorted(set(data) - {"params"})
    if extra:
        msg = f'{source}: unknown top-level key(s) {", ".join(map(repr, extra))}; a space file holds only [params."PATH"] tables.'
        raise TuneError(msg)
    tables = data.get("params")
    if not isinstance(tables, dict) or not tables:
        msg = f'{source}: no parameters. Add at least one table such as [params."train.lr"] with type = "log-float", low = 1e-4, high = 1e-2.'
        raise TuneError(msg)
    return Space(tuple(_param(path, spec, source) for path, spec in tables.items()), source)


def _param(path: str, spec: Any, source: str) -> Param:
    where = f'{source}, params."{path}"'
    if not isinstance(spec, dict):
        msg = f"{where}: must be a table with `type` and its range or choices, got {spec!r}."
        raise TuneError(msg)
    kind = _ALIASES.get(str(spec.get("type")), spec.get("type"))
    if kind not in KINDS:
        msg = f"{where}: type {spec.get('type')!r} is not a distribution. Valid types: {', '.join(KINDS)}."
        raise TuneError(msg)
    unknown = sorted(set(spec) - _KEYS[kind])
    if unknown:
        msg = f"{where}: unknown key(s) {', '.join(map(repr, unknown))} for type {kind!r}; valid keys: {', '.join(sorted(_KEYS[kind]))}."
        raise TuneError(msg)
    parts = split_path(path, where)
    if kind == "categorical":
        return Param(path, parts, kind, choices=_choices(spec.get("choices"), where))
    low, high, step = (spec.get(key) for key in ("low", "high", "step"))
    log = kind == "log-float" or bool(spec.get("log", False))
    _check_range(kind, low, high, step, log, where)
    return Param(path, parts, "int" if kind == "int" else "float", low, high, log, step)


def _choices(choices: Any, where: str) -> tuple[Any, ...]:
    if not isinstance(choices, list) or not choices:
        msg = f"{where}: a categorical parameter needs `choices`, a non-empty list, e.g. choices = [0.1, 0.2]."
        raise TuneError(msg)
    bad = [c for c in choices if not isinstance(c, str | int | float | bool)]
    if bad:
        msg = f"{where}: choices must be strings, numbers or booleans (Optuna stores them), got {bad[0]!r}."
        raise TuneError(msg)
    if len(set(map(repr, choices))) != len(choices):
        msg = f"{where}: choices {choices!r} repeat a value; list each once."
        raise TuneError(msg)
    return tuple(choices)


def _check_range(kind: str, low: Any, high: Any, step: Any, log: bool, where: str) -> None:
    number = int if kind == "int" else (int, float)
    for name, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, number):
            want = "an integer" if kind == "int" else "a number"
            msg = f"{where}: `{name}` must be {want} for type {kind!r}, got {value!r}."
            raise TuneError(msg)
        if not math.isfinite(value):
            msg = f"{where}: `{name}` must be finite, got {value!r}."
            raise TuneError(msg)
    if low > high:
        msg = f"{where}: low {low!r} is above high {high!r}; swap them."
        raise TuneError(msg)
    if log and low <= 0:
        msg = f'{where}: a log-scale range needs low > 0, got {low!r}; use type = "float" or a positive low.'
        raise TuneError(msg)
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, number) or step <= 0:
            msg = f"{where}: `step` must be a positive {'integer' if kind == 'int' else 'number'}, got {step!r}."
            raise TuneError(msg)
        if log:
            msg = f"{where}: `step` and a log scale cannot be combined (Optuna samples one or the other)."
            raise TuneError(msg)


def split_path(path: str, where: str = "") -> tuple[Part, ...]:
    """``heads[3].augmentation.mask_ratio`` → ``("heads", 3, "augmentation", "mask_ratio")``."""
    parts: list[Part] = []
    for piece in path.split("."):
        match = _PIECE.match(piece.strip())
        if not match:
            msg = f"{where or path}: cannot read the recipe path {path!r}; write e.g. train.lr or heads[1].weight."
            raise TuneError(msg)
        parts.append(match.group("key"))
        parts += [int(i) for i in re.findall(r"\[(\d+)\]", match.group("indices"))]
    return tuple(parts)


def with_values(data: Mapping[str, Any], values: Mapping[Param, Any]) -> dict[str, Any]:
    """A deep copy of recipe ``data`` with each parameter's path set to its value."""
    result = copy.deepcopy(dict(data))
    for param, value in values.items():
        node: Any = result
        for part, nxt in zip(param.parts[:-1], param.parts[1:], strict=True):
            if isinstance(part, int):
                node = node[part]  # the path was resolved against the recipe: the index exists
            else:
                # An absent table (a defaulted section) is created, as `--set` does.
                node = node.setdefault(part, [] if isinstance(nxt, int) else {})
        node[param.parts[-1]] = value
    return result


def resolve_field(recipe: BaseModel, param: Param, where: str) -> FieldInfo:
    """The pydantic field ``param.path`` names in a validated recipe, or a located error."""
    node: Any = recipe
    seen = ""
    for position, part in enumerate(param.parts):
        if isinstance(part, int):
            if not isinstance(node, list | tuple):
                msg = f"{where}: {seen} is not a list, so [{part}] does not apply."
                raise TuneError(msg)
            if part >= len(node):
                entries = ", ".join(f"[{i}] {getattr(e, 'name', e)!r}" for i, e in enumerate(node))
                msg = f"{where}: {seen} has {len(node)} entries, so [{part}] does not exist. The entries: {entries}."
                raise TuneError(msg)
            node, seen = node[part], f"{seen}[{part}]"
            continue
        if not isinstance(node, BaseModel):
            msg = f"{where}: {seen} is a value ({node!r}), not a table with a field {part!r}."
            raise TuneError(msg)
        fields = type(node).model_fields
        if part not in fields:
            close = difflib.get_close_matches(part, list(fields), n=2)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            name = f" ({node.name!r})" if isinstance(getattr(node, "name", None), str) else ""
            msg = f"{where}: {seen or 'the recipe'}{name} has no field {part!r}.{hint} Valid fields: {', '.join(sorted(fields))}."
            raise TuneError(msg)
        if position == len(param.parts) - 1:
            return fields[part]
        node, seen = getattr(node, part), f"{seen}.{part}" if seen else part
    msg = f"{where}: the path {param.path!r} ends on an entry of a list, not on a field; name a field, e.g. {param.path}.weight."
    raise TuneError(msg)


def field_bounds(field: FieldInfo) -> dict[str, float]:
    """The ``gt/ge/lt/le`` constraints of a pydantic field (``{"ge": 0}``...)."""
    bounds: dict[str, float] = {}
    for item in field.metadata:
        for name in ("gt", "ge", "lt", "le"):
            value = getattr(item, name, None)
            if isinstance(value, int | float):
                bounds[name] = value
    return bounds


_VIOLATED = {
    "gt": lambda v, b: v <= b,
    "ge": lambda v, b: v < b,
    "lt": lambda v, b: v >= b,
    "le": lambda v, b: v > b,
}
_SYMBOL = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def check_space(
    space: Space,
    data: Mapping[str, Any],
    recipe: BaseModel,
    validate: Any,
) -> None:
    """Check every parameter against a recipe before anything runs; raise a located :class:`TuneError`.

    Args:
        space: the space to check.
        data: the recipe as read (after ``--set``), into which values are put.
        recipe: the same recipe validated (its schema resolves the paths).
        validate: ``validate(data) -> recipe`` (raises :class:`RecipeError`), e.g. a partial of
            :func:`eclsr.recipe.load.validate_recipe` with the recipe's source and folder.
    """
    for param in space.params:
        where = space.where(param)
        field = resolve_field(recipe, param, where)
        if param.kind != "categorical":
            for name, bound in field_bounds(field).items():
                for end, value in (("low", param.low), ("high", param.high)):
                    if _VIOLATED[name](value, bound):
                        msg = f"{where}: the range's {end} end {value!r} is outside the field's bounds: {param.path} must be {_SYMBOL[name]} {bound!r} ({_describe(field_bounds(field))}). Narrow the range."
                        raise TuneError(msg)
        for label, value in param.probes():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # migration notes were shown for the recipe
                    validate(with_values(data, {param: value}))
            except RecipeError as exc:
                problems = "; ".join(exc.problems) or str(exc)
                msg = (
                    f"{where}: the recipe does not validate at the {label} ({value!r}): {problems}"
                )
                raise TuneError(msg) from None


def _describe(bounds: Mapping[str, float]) -> str:
    return "allowed: " + " and ".join(f"{_SYMBOL[k]} {v!r}" for k, v in bounds.items())


def restrict(space: Space, recipe: BaseModel) -> tuple[Space, list[str]]:
    """The parameters of ``space`` whose paths exist in ``recipe``, and the paths dropped.

    ``--paired`` tunes the baseline with the same space shape: a path the baseline does not have
    (a head it lacks) is dropped, every shared one (``train.lr``, ``encoder.dropout``) is kept.
    """
    kept, dropped = [], []
    for param in space.params:
        try:
            resolve_field(recipe, param, space.where(param))
        except TuneError:
            dropped.append(param.path)
            continue
        kept.append(param)
    return Space(tuple(kept), space.source), dropped
