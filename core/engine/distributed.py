"""torchrun / DDP support: process-group set-up and helpers (PyTorch's own engine, nothing home-made)."""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist


def maybe_init_distributed() -> int:
    """Join the process group when launched by torchrun; return this process's rank (0 alone)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return dist.get_rank()


def leave_distributed() -> None:
    """After a finished run: wait for every rank, then leave the process group cleanly.

    Without it a rank that finished first exits while rank 0 still writes the run directory;
    gloo's threads then die with the interpreter ("terminate called without an active
    exception", SIGABRT) and torchrun kills rank 0 mid-write. Seen in about 1 of 15 runs of the
    2-process test on a loaded machine.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def sum_over_ranks(local: np.ndarray) -> np.ndarray:
    """Element-wise sum of every rank's int64 array (exact: the shards are disjoint)."""
    tensor = torch.from_numpy(np.ascontiguousarray(local, dtype=np.int64))
    dist.all_reduce(tensor)
    return tensor.numpy()


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Every rank's ``values`` averaged (same keys on every rank); unchanged when alone.

    Each rank's epoch loss is its share of the global mean (``Step.global_mean``), so the mean
    over ranks is the loss of the global batches: what the one printed epoch line shows.
    """
    rank, world_size = world()
    if world_size == 1:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(tensor)
    return {k: float(v) / world_size for k, v in zip(keys, tensor.tolist(), strict=True)}
