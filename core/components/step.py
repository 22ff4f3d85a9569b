"""One training step's shared state: the batch, the model parts and memoised passes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from torch import Tensor, nn

from eclsr.components.runtime import Encoder
from eclsr.ops.positions import real_mask

T = TypeVar("T")


class Collectives:
    """The two collective operations heads use, over torch.distributed's default group."""

    def all_reduce_sum(self, tensor: Tensor) -> Tensor:
        """The sum of ``tensor`` over every process (in place; returned for convenience)."""
        dist.all_reduce(tensor)
        return tensor

    def all_gather(self, tensor: Tensor, world_size: int) -> list[Tensor]:
        """Every process's ``tensor`` (same shape everywhere), rank order; gradients flow back."""
        return list(dist_nn.all_gather(tensor))

    def all_gather_sizes(self, size: Tensor, world_size: int) -> list[Tensor]:
        """Every process's ``size`` tensor (no gradient), rank order."""
        sizes = [torch.zeros_like(size) for _ in range(world_size)]
        dist.all_gather(sizes, size)
        return sizes


class MirroredRanks(Collectives):
    """Collectives of ``world_size`` ranks that all hold this process's tensors (one process).

    Runs a head's distributed code path (``global_mean``, ``gather_rows``) without a process
    group: ``eclsr.testing.check_head`` uses it, so a head that breaks under ``--nproc 2`` is
    caught by a plain unit test.
    """

    def __init__(self, world_size: int = 2) -> None:
        """Pretend to be one of ``world_size`` identical ranks."""
        self.world_size = world_size

    def all_reduce_sum(self, tensor: Tensor) -> Tensor:  # noqa: D102
        return tensor.mul_(self.world_size)

    def all_gather(self, tensor: Tensor, world_size: int) -> list[Tensor]:  # noqa: D102
        return [tensor] * world_size

    def all_gather_sizes(self, size: Tensor, world_size: int) -> list[Tensor]:  # noqa: D102
        return [size.clone() for _ in range(world_size)]


@dataclass
class Batch:
    """A batch of training sequences, right-padded and trimmed to its longest row.

    Attributes:
        items: ``[B, T]`` input item ids (0 = padding).
        targets: ``[B, T]`` next item at each position; 0 where no next-item loss applies
            (padding, and every position but the last of a prefix example).
        lengths: ``[B]`` number of real positions per row.
        users: ``[B]`` user indices (rows of the dataset).
    """

    items: Tensor
    targets: Tensor
    lengths: Tensor
    users: Tensor

    @property
    def mask(self) -> Tensor:
        """``[B, T]`` bool, True at real positions."""
        return real_mask(self.lengths, self.items.size(1))

    def to(self, device: torch.device | str) -> Batch:
        """Move every tensor to ``device``."""
        return Batch(*(t.to(device) for t in (self.items, self.targets, self.lengths, self.users)))


@dataclass
class Step:
    """Everything a head or augmentation sees during one training step.

    Expensive results are shared through :meth:`memo`, so the UBE's first pass serves the
    next-item loss, the RID conditioning and the first contrastive view, and one generator pass
    serves both the generator loss and the masked substitution.

    Attributes:
        batch: the batch being trained on.
        encoder: the UBE.
        item_embedding: the shared item table ``[N+2, D]``.
        num_items: N.
        generator: the seeded random generator every component must draw from.
        epoch: current epoch (0-based).
        stage: training stage (1, or 2 after a two-stage schedule switches).
        frozen: registered names of the heads that run without gradient this step (a schedule
            froze or dropped them): they add no loss, and what they serve others is computed
            under ``torch.no_grad()``.
        services: modules published by heads (e.g. ``"generator"``).
        rank: this process's rank under torchrun (0 alone).
        world_size: number of processes (1 alone). Heads that average over units (positions,
            sequences) call :meth:`global_mean`, and contrastive heads :meth:`gather_rows`, so a
            distributed run computes the loss of the global batch.
        targets_per_row: the mean number of next-item targets per training row over the whole
            epoch; ``positions_per_row`` the mean number of real input positions. The engine
            sets both (``None`` in a step built by hand). See :meth:`epoch_mean`.
    """

    batch: Batch
    encoder: Encoder
    item_embedding: nn.Embedding
    num_items: int
    generator: torch.Generator
    epoch: int = 0
    stage: int = 1
    frozen: frozenset[str] = frozenset()
    services: dict[str, nn.Module] = field(default_factory=dict)
    rank: int = 0
    world_size: int = 1
    targets_per_row: float | None = None
    positions_per_row: float | None = None
    collectives: Collectives = field(default_factory=Collectives, repr=False)
    _memo: dict[Any, Any] = field(default_factory=dict, repr=False)

    def global_mean(self, local_mean: Tensor, count: int) -> Tensor:
        """Turn a mean over this process's ``count`` units into its share of the global mean.

        Alone, ``local_mean`` is returned unchanged. Under DDP, which averages gradients over the
        ``W`` processes, the result is ``local_mean · count · W / global_count``, so the averaged
        gradient is exactly that of the mean over every unit of the global batch.
        """
        if self.world_size == 1:
            return local_mean
        total = self.collectives.all_reduce_sum(
            torch.tensor(float(count), device=local_mean.device)
        )
        return local_mean * (count * self.world_size / total.clamp(min=1.0))  # shape kept

    def epoch_mean(self, local_mean: Tensor, count: int, per_row: float | None) -> Tensor:
        """A mean over ``count`` units rescaled to ``sum / (B × per_row)``, ``per_row`` a run constant.

        With length-bucketed batches a plain mean weighs a unit (a target, a position) of a
        batch of short rows more than one of a batch of long rows: the batch's count is small.
        Dividing every batch's sum by its rows times the epoch's mean units per row instead
        gives each unit the same weight in every batch, as random batches do on average, at
        bucketing's speed (any constant ``per_row`` does, e.g. ``L`` for the authors' slot
        scale). ``per_row`` ``None`` (a step built by hand) falls back to the batch's own count,
        i.e. the plain mean. Global under DDP like :meth:`global_mean`.
        """
        rows = self.batch.items.size(0)
        per_row = per_row or count / max(rows, 1)
        return self.global_mean(local_mean * (count / max(rows * per_row, 1e-12)), rows)

    def gather_rows(self, rows: Tensor) -> tuple[Tensor, int]:
        """Concatenate every process's ``rows [B_r, D]`` in rank order, keeping gradients.

        Returns the global ``[ΣB_r, D]`` tensor and the offset of this process's rows in it
        (alone: ``rows`` and 0). Used for in-batch negatives across processes.
        """
        if self.world_size == 1:
            return rows, 0
        size = torch.tensor([rows.size(0)], device=rows.device)
        sizes = [int(s) for s in self.collectives.all_gather_sizes(size, self.world_size)]
        padded = rows.new_zeros((max(sizes), *rows.shape[1:]))
        padded[: rows.size(0)] = rows
        gathered = self.collectives.all_gather(padded, self.world_size)  # gradients flow back
        parts = [g[:n] for g, n in zip(gathered, sizes, strict=True)]
        return torch.cat(parts), sum(sizes[: self.rank])

    def is_frozen(self, head_name: str) -> bool:
        """True when the head registered as ``head_name`` must run without gradient."""
        return head_name in self.frozen

    def memo(self, key: Any, compute: Callable[[], T]) -> T:
        """Return the value cached under ``key``, computing it once per step."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    @property
    def hidden(self) -> Tensor:
        """``[B, T, D]``: the UBE's first pass over the batch (computed once per step)."""
        return self.memo("ube.hidden", lambda: self.encoder(self.batch.items, self.batch.lengths))

    @property
    def mask_token(self) -> int:
        """Id of the [MASK] token (N+1)."""
        return self.num_items + 1

    @property
    def item_weights(self) -> Tensor:
        """``[N+1, D]`` output-projection rows for ids 0..N (row 0 = padding, never a target)."""
        return self.item_embedding.weight[: self.num_items + 1]
