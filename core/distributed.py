"""torchrun / DDP support: process-group set-up and helpers (PyTorch's own engine, nothing home-made)."""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist

from eclsr.batching import Windows


def maybe_init_distributed() -> int:
    """Join the process group when launched by torchrun; return this process's rank (0 alone)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return dist.get_rank()


def world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_windows(windows: Windows, rank: int, world_size: int) -> Windows:
    """This rank's contiguous slice of the evaluation users."""
    part = np.array_split(np.arange(len(windows.users)), world_size)[rank]
    return Windows(
        windows.users[part], windows.start[part], windows.length[part], windows.target[part]
    )


def gather_arrays(local: np.ndarray) -> np.ndarray:
    """Concatenate every rank's array in rank order (exact: no reduction arithmetic)."""
    parts: list[np.ndarray | None] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, local)
    return np.concatenate([p for p in parts if p is not None])
