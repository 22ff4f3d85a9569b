"""torchrun / DDP support: process-group set-up and helpers (PyTorch's own engine, nothing home-made)."""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch
import torch.distributed as dist

from eclsr.errors import EclsrError


def resolve_device(name: str) -> torch.device:
    """The device ``train.device`` gives this process; under torchrun each takes its local GPU.

    ``auto`` is CUDA only when every process on this machine can have a GPU of its own (two
    processes on one GPU fail at ``set_device``: "invalid device ordinal"); else the CPU.
    ``cuda`` with more processes than GPUs is an error naming both fixes.
    """
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if name == "cuda" and gpus == 0:
        msg = "train.device = 'cuda' but no CUDA device is available; use 'auto' or 'cpu'."
        raise EclsrError(msg)
    if name == "cuda" and local_processes > gpus:
        msg = (
            f"train.device = 'cuda' with {local_processes} processes on this machine but "
            f"{gpus} GPU(s): each process needs a GPU of its own. Use --nproc {gpus}, or "
            "train.device = 'cpu' to train on more processes than GPUs."
        )
        raise EclsrError(msg)
    if name == "auto":
        name = "cuda" if 0 < local_processes <= gpus else "cpu"
        if gpus and name == "cpu" and local_rank == 0:
            warnings.warn(
                f"train.device = 'auto': {local_processes} processes but {gpus} GPU(s) on this "
                f"machine, so they train on the CPU. Use --nproc {gpus} to train on the GPU(s).",
                stacklevel=2,
            )
    if name == "cuda":
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device(name)


def maybe_init_distributed(device: str = "auto") -> int:
    """Join the process group when launched by torchrun; return this process's rank (0 alone).

    ``device`` is the recipe's ``train.device``: NCCL where it resolves to a GPU, gloo on the CPU
    (NCCL moves no CPU tensors, so a GPU on the machine alone does not decide it).
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0
    if not dist.is_initialized():
        backend = "nccl" if resolve_device(device).type == "cuda" else "gloo"
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
