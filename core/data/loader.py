"""``load_dataset``: resolve a source, read it, preprocess it, cache it, stamp the protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

import eclsr.data.cache as cache
from eclsr.components.readers import Interactions, ReaderConfig
from eclsr.data.catalogue import CATALOGUE, data_dir, entry_file, lookup, with_entry_defaults
from eclsr.data.config import DataConfig
from eclsr.data.parsing import head_lines, require_file
from eclsr.data.preprocess import preprocess
from eclsr.data.sequences import SequenceDataset
from eclsr.errors import DataError, RegistryError

ID_ORDER = (
    "raw ids sorted (numerically when all are integers, else as text); items 1..N, users 0..U-1"
)


def load_dataset(config: DataConfig) -> SequenceDataset:
    """The prepared dataset for the recipe's ``data`` section.

    ``config.dataset`` is ``"synthetic"``, a catalogue name (looked up in the data directory),
    or a file path. The result's ``protocol`` records the dataset, source hash, reader,
    preprocessing, row counts and statistics.
    """
    if config.dataset == "synthetic":
        return _synthetic(config)
    if config.dataset in CATALOGUE:
        entry = lookup(config.dataset)
        return load_file(entry_file(entry, config), with_entry_defaults(entry, config), entry.name)
    path = Path(config.dataset).expanduser()
    if not path.is_file() and (data_dir(config) / path).is_file():
        path = data_dir(config) / path
    if not path.is_file():
        if path.suffix or path.parent != Path("."):
            require_file(path)
        lookup(config.dataset)  # raises: unknown name, with close matches
    return load_file(path, config)


def load_file(path: Path, config: DataConfig, name: str | None = None) -> SequenceDataset:
    """Read and prepare one file, using the cache when ``config.cache`` is set."""
    require_file(path)
    reader = choose_reader(path, config)
    root = cache.cache_root(config.cache_dir)
    source_sha = cache.file_sha256(path, root if config.cache else None)
    reader_facts = {"name": reader.name, **reader.model_dump(mode="json", exclude={"name"})}
    key = cache.fingerprint(
        {
            "source_sha256": source_sha,
            "reader": reader_facts,
            "preprocessing": config.preprocessing(),
        }
    )
    if config.cache and (hit := cache.load(root, key)) is not None:
        return hit
    data = prepare(reader.build().read(path), config)
    data.name = name or path.stem
    data.source_hash = key
    data.protocol = {
        "dataset": data.name,
        "source_file": path.name,
        "source_sha256": source_sha,
        "reader": reader_facts,
    } | data.protocol
    if config.cache:
        cache.save(root, key, data)
    return data


def prepare(inter: Interactions, config: DataConfig) -> SequenceDataset:
    """Preprocess interactions already in memory; fills the protocol (without source facts)."""
    data, counts = preprocess(inter, config)
    split: dict[str, Any] = {"name": config.split}
    if "time_cutoffs" in data.protocol:
        split |= {
            "quantiles": list(config.time_split),
            "cutoffs": data.protocol.pop("time_cutoffs"),
        }
    data.protocol = {
        "preprocessing": config.preprocessing(),
        "split": split,
        "id_order": ID_ORDER,
        "counts": counts,
        "stats": stats(data),
    }
    return data


def read_sequence_file(path: str | Path) -> SequenceDataset:
    """Read the one-line-per-user format ``user item item ...`` (items oldest first) as it is.

    No filtering (no k-core, any length). Item ids are numbered by their raw id in numeric order,
    so files whose ids already run 1..N contiguously (the S3-Rec/ICLRec files) keep them.
    """
    config = DataConfig(
        dataset=str(path), reader={"name": "sequence"}, k_core=0, min_length=1, cache=False
    )
    return load_file(Path(path), config)


def from_dataframe(
    frame: Any, config: DataConfig | None = None, name: str = "dataframe"
) -> SequenceDataset:
    """Prepare a pandas (or any ``frame[column].to_numpy()``) DataFrame of interactions.

    Columns are found as in CSV files: ``config.columns`` first, then common names.
    """
    from eclsr.data.parsing import interactions_from_columns, pick_columns

    config = config or DataConfig(dataset=name)
    names = [str(c) for c in frame.columns]
    roles = pick_columns(names, config.columns, Path(name))
    table = [
        np.asarray(frame[c].to_numpy()) if i in roles.values() else np.empty(0)
        for i, c in enumerate(frame.columns)
    ]
    data = prepare(interactions_from_columns(table, roles, None, Path(name), names), config)
    data.name = name
    data.protocol = {"dataset": name} | data.protocol
    return data


def choose_reader(path: Path, config: DataConfig) -> ReaderConfig:
    """The reader config for ``path``: ``config.reader``, or one chosen by suffix and sniffing.

    ``config.reader`` may be a validated reader config (a recipe's), a ``{"name": ...}`` dict
    (programmatic use; validated here) or None.
    """
    from eclsr.registry.manager import collect_registries

    reader = config.reader
    if isinstance(reader, ReaderConfig):
        cls, options = type(reader), reader.model_dump(exclude={"name"}, exclude_unset=True)
    else:
        options = dict(reader or {})
        name = options.pop("name", None)
        readers = collect_registries().readers
        try:
            cls = readers.get(name) if name is not None else _detect(path, list(readers))
        except RegistryError as exc:
            msg = f"data.reader: {exc}"
            raise DataError(msg) from None
    if config.columns:
        if "columns" not in cls.model_fields:
            msg = f"data.columns is set, but the {cls.model_fields['name'].default!r} reader has no column mapping; remove it."
            raise DataError(msg)
        options["columns"] = dict(config.columns)
    try:
        return cls(**options)
    except ValidationError as exc:
        msg = (
            f"data.reader options do not fit the {cls.model_fields['name'].default!r} reader: {exc}"
        )
        raise DataError(msg) from None


def _detect(path: Path, classes: list[type[ReaderConfig]]) -> type[ReaderConfig]:
    suffix = path.suffix.lower()
    candidates = [c for c in classes if suffix in c.extensions]
    if not candidates:
        known = sorted({e for c in classes for e in c.extensions})
        names = sorted(c.model_fields["name"].default for c in classes)
        msg = f"cannot tell the format of {str(path)!r} from its suffix {suffix!r} (known: {', '.join(known)}). Set data.reader = {{name = ...}} with one of {names}."
        raise DataError(msg)
    if len(candidates) == 1:
        return candidates[0]
    head = head_lines(path)
    return max(candidates, key=lambda c: c.sniff(head))


def stats(dataset: SequenceDataset) -> dict[str, Any]:
    """Users, items, actions, average/min/max length and sparsity (the paper's Table 2)."""
    lengths = dataset.lengths
    users, actions = int(dataset.num_users), int(len(dataset.items))
    items = int(np.unique(dataset.items).size)
    return {
        "users": users,
        "items": items,
        "actions": actions,
        "avg_length": actions / users if users else 0.0,
        "min_length": int(lengths.min()) if users else 0,
        "max_length": int(lengths.max()) if users else 0,
        "sparsity": 1.0 - actions / (users * items) if users and items else 1.0,
    }


def _synthetic(config: DataConfig) -> SequenceDataset:
    from eclsr.data.synthetic import generate

    data = generate(num_users=config.synthetic_users, num_items=config.synthetic_items, seed=0)
    facts = {"users": config.synthetic_users, "items": config.synthetic_items, "seed": 0}
    data.protocol = {
        "dataset": "synthetic",
        "synthetic": facts,
        "split": {"name": "leave_one_out"},
        "stats": stats(data),
    } | dict(data.protocol)
    return data
