"""On-disk cache of prepared datasets: compact numpy arrays plus a JSON manifest.

An entry's key is the sha256 of the source file's sha256, the reader and its options, the
preprocessing options and the cache format version, so any change to the file or an option
misses the cache. Entries are written to a temporary folder and renamed into place, so a
half-written entry is never read. Source hashes are memoised by (path, size, mtime).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from eclsr.data.sequences import SequenceDataset

CACHE_VERSION = 1
CACHE_DIR_ENV = "ECLSR_CACHE_DIR"


def cache_root(cache_dir: str | None) -> Path:
    """``cache_dir``, else ``$ECLSR_CACHE_DIR``, else ``$XDG_CACHE_HOME`` or ``~/.cache``/eclsr/datasets."""
    if cache_dir or os.environ.get(CACHE_DIR_ENV):
        return Path(cache_dir or os.environ[CACHE_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "eclsr" / "datasets"


def file_sha256(path: Path, root: Path | None = None) -> str:
    """sha256 of ``path``; memoised under ``root`` by resolved path, size and mtime."""
    info = path.stat()
    stamp = {"path": str(path.resolve()), "size": info.st_size, "mtime_ns": info.st_mtime_ns}
    memo = root / "hashes" / (fingerprint(stamp) + ".json") if root else None
    if memo is not None and memo.is_file():
        return json.loads(memo.read_text())["sha256"]
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    if memo is not None:
        _write_quietly(memo, json.dumps(stamp | {"sha256": digest.hexdigest()}))
    return digest.hexdigest()


def fingerprint(parts: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``parts``."""
    text = json.dumps(parts | {"cache_version": CACHE_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def load(root: Path, key: str) -> SequenceDataset | None:
    """The cached dataset ``key``, or None when absent or unreadable."""
    folder = root / key
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        with np.load(folder / "arrays.npz", allow_pickle=False) as arrays:
            split = arrays["split_points"] if "split_points" in arrays.files else None
            data = SequenceDataset(
                items=arrays["items"],
                offsets=arrays["offsets"],
                num_items=int(manifest["num_items"]),
                item_vocab=arrays["item_vocab"].tolist(),
                user_vocab=arrays["user_vocab"].tolist(),
                split_points=split,
            )
    except (OSError, ValueError, KeyError):
        return None
    data.name, data.source_hash, data.protocol = manifest["name"], key, manifest["protocol"]
    data.from_cache = True
    return data


def save(root: Path, key: str, data: SequenceDataset) -> None:
    """Write ``data`` under ``key`` atomically; a cache that cannot be written only warns."""
    arrays = {
        "items": data.items,
        "offsets": data.offsets,
        "item_vocab": np.asarray(data.item_vocab or [], dtype=str),
        "user_vocab": np.asarray(data.user_vocab or [], dtype=str),
    }
    if data.split_points is not None:
        arrays["split_points"] = data.split_points
    manifest = {"name": data.name, "num_items": data.num_items, "protocol": data.protocol}
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=root))
        np.savez(staging / "arrays.npz", **arrays)
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
        try:
            staging.rename(root / key)
        except OSError:  # another process cached it first
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as exc:
        warnings.warn(f"could not write the dataset cache in {root}: {exc}", stacklevel=2)


def _write_quietly(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_suffix(f".{os.getpid()}.tmp")
        staging.write_text(text)
        staging.replace(path)
    except OSError:
        pass
