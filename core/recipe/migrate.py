"""Recipes written for an older eclsr, rewritten to today's schema (with a note for each change).

Run directories keep their resolved ``recipe.yaml``, so a run started by an older eclsr must still
resume and evaluate: every renamed or moved field is migrated here, never silently dropped
without a note. Each rule is one small function; :func:`migrate` applies them all.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

Rule = Callable[[dict[str, Any]], list[str]]


def _section(data: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = data.get(name)
    return value if isinstance(value, dict) else None


def reader_slot(data: dict[str, Any]) -> list[str]:
    """``data.format`` + ``data.reader_options`` → ``data.reader = {name = ..., ...options}``."""
    section = _section(data, "data")
    if section is None or not ({"format", "reader_options"} & section.keys()):
        return []
    name = section.pop("format", "auto")
    options = section.pop("reader_options", None) or {}
    if name == "auto" and not options:
        return []  # the old default: the reader is still chosen by suffix, nothing changes
    if "reader" in section:
        return ["data.format / data.reader_options ignored: data.reader is set."]
    if name == "auto":
        section["reader_options"] = options  # no name to attach them to: let validation say so
        return []
    section["reader"] = {"name": name, **options}
    return [
        f"data.format and data.reader_options are now one field: data.reader = {section['reader']!r}."
    ]


def eval_batch_size(data: dict[str, Any]) -> list[str]:
    """``train.eval_batch_size`` → ``eval.batch_size`` (the section that uses it)."""
    train = _section(data, "train")
    if train is None or "eval_batch_size" not in train:
        return []
    value = train.pop("eval_batch_size")
    evaluation = data.setdefault("eval", {})
    if isinstance(evaluation, dict):
        evaluation.setdefault("batch_size", value)
    return ["train.eval_batch_size is now eval.batch_size."]


def log_every(data: dict[str, Any]) -> list[str]:
    """``train.log_every`` was never read; it is removed."""
    train = _section(data, "train")
    if train is None or "log_every" not in train:
        return []
    value = train.pop("log_every")
    return [] if value == 0 else ["train.log_every was never used and is removed (ignored here)."]


RULES: tuple[Rule, ...] = (reader_slot, eval_batch_size, log_every)


def migrate(data: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A migrated deep copy of ``data`` and one note per change (``data`` is not modified)."""
    out = copy.deepcopy(dict(data))
    notes = [note for rule in RULES for note in rule(out)]
    return out, notes
