"""The run directory: resolved recipe, plugin list, metrics, results, checkpoints.

Files are written atomically (temporary file, fsync, rename), so a crash never leaves a
half-written file that looks complete.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from eclsr.errors import EclsrError

RESULTS = "results.json"
METRICS = "metrics.jsonl"
RECIPE = "recipe.yaml"
PLUGINS = "plugins.json"
BEST = "best.pt"
#: Files a run writes; --overwrite removes these (and nothing else) from a reused directory.
OWNED_FILES = (
    RESULTS,
    METRICS,
    RECIPE,
    PLUGINS,
    BEST,
    "ranks.npz",
    "checkpoint-*.pt",
    "checkpoints.json",
)


def default_run_dir(recipe_name: str) -> Path:
    """``runs/<recipe-name>/<UTC timestamp>``."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    return Path("runs") / recipe_name / stamp


def prepare_run_dir(path: Path, overwrite: bool) -> Path:
    """Create ``path``; refuse to reuse a non-empty directory unless ``overwrite``."""
    check_run_dir(path, overwrite)
    path.mkdir(parents=True, exist_ok=True)
    for stale in OWNED_FILES:  # --overwrite: a previous run's files must not mix with this one's
        for file in path.glob(stale):
            file.unlink()
    return path


def check_run_dir(path: Path, overwrite: bool) -> None:
    """Raise if ``path`` cannot be used as a new run directory (nothing is created)."""
    if path.exists() and not path.is_dir():
        msg = f"--out {str(path)!r} is a file, not a directory. Choose another path."
        raise EclsrError(msg)
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        msg = f"run directory {str(path)!r} already holds files. Choose another --out, or pass --overwrite to replace them."
        raise EclsrError(msg)


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` via a temporary file in the same folder, fsync and rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, value: Any) -> None:
    """Atomically write ``value`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=False) + "\n").encode())


def append_jsonl(path: Path, value: Any) -> None:
    """Append one JSON line (flushed and fsynced)."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(value) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Atomically save a state dict of tensors and plain values (loadable with weights_only)."""
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_state(path: Path) -> dict[str, Any]:
    """Load a checkpoint without unpickling code (``weights_only=True``)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        msg = f"checkpoint {str(path)!r} does not exist."
        raise EclsrError(msg) from None
    except Exception as exc:  # truncated, corrupt or carrying code
        msg = f"checkpoint {str(path)!r} cannot be loaded safely ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). It is corrupt, truncated, or not an eclsr checkpoint; nothing in it was executed."
        raise EclsrError(msg) from None
