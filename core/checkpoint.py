"""Epoch checkpoints for resuming: atomic files, a checksum manifest, fallback to the previous one.

A checkpoint holds only tensors and plain values and is read with ``torch.load(weights_only=True)``,
so a file crafted to run code when unpickled is refused, never executed.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

from eclsr import rundir
from eclsr.errors import EclsrError

MANIFEST = "checkpoints.json"
KEEP = 2  # the newest checkpoints kept; the older one is the fallback for a corrupt newest


def checkpoint_name(epoch: int) -> str:
    """File name of the checkpoint written after ``epoch`` epochs."""
    return f"checkpoint-{epoch:05d}.pt"


def save_checkpoint(run_dir: Path, epoch: int, state: dict[str, Any]) -> None:
    """Write the checkpoint atomically, record its sha256, prune older ones."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    name = checkpoint_name(epoch)
    rundir.atomic_write_bytes(run_dir / name, payload)
    entries = [e for e in read_manifest(run_dir) if e["file"] != name]
    entries.append({"file": name, "epoch": epoch, "sha256": hashlib.sha256(payload).hexdigest()})
    entries.sort(key=lambda e: e["epoch"])
    for stale in entries[:-KEEP]:
        (run_dir / stale["file"]).unlink(missing_ok=True)
    rundir.write_json(run_dir / MANIFEST, entries[-KEEP:])


def read_manifest(run_dir: Path) -> list[dict[str, Any]]:
    """The manifest's entries, oldest first (empty when there is none)."""
    file = run_dir / MANIFEST
    if not file.is_file():
        return []
    try:
        entries = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        msg = f"{file} is not a readable checkpoint manifest ({exc}); the run cannot be resumed."
        raise EclsrError(msg) from None
    return [e for e in entries if isinstance(e, dict) and {"file", "epoch", "sha256"} <= e.keys()]


def load_latest_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The newest checkpoint whose checksum matches, falling back (with a warning) to older ones."""
    for entry in reversed(read_manifest(run_dir)):
        file = run_dir / entry["file"]
        try:
            payload = file.read_bytes()
        except OSError:
            warnings.warn(f"checkpoint {file} is missing; trying the previous one", stacklevel=2)
            continue
        if hashlib.sha256(payload).hexdigest() != entry["sha256"]:
            warnings.warn(
                f"checkpoint {file} is corrupt or truncated (checksum mismatch); using the previous one",
                stacklevel=2,
            )
            continue
        return rundir.load_state(file)
    return None
