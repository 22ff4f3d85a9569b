"""Full-ranking evaluation over every item, in memory-bounded chunks.

Rank of the target = 1 + the number of items scoring strictly higher (``ties="strict"``, the
protocol of the issue tracker and METHOD.md: no index order or sort stability decides a rank).
``ties="pessimistic"`` also counts items that tie with the target, so a model that scores every
item the same ranks every target last rather than first. Padding (id 0) and [MASK] are never
ranked. Optionally the user's history is excluded (the target never is).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from eclsr.data.batching import gather
from eclsr.data.sequences import SequenceDataset
from eclsr.data.splits import Windows
from eclsr.errors import EclsrError

TIE_RULES = {
    "strict": "rank = 1 + number of items scoring strictly higher than the target",
    "pessimistic": "rank = 1 + number of other items scoring higher than or equal to the target",
}


def target_ranks(
    user_vectors: Tensor,
    item_vectors: Tensor,
    targets: Tensor,
    history: Tensor | None = None,
    chunk_elements: int = 1 << 24,
    ties: str = "strict",
) -> Tensor:
    """Rank of each target among items 1..N.

    Args:
        user_vectors: ``[B, D]``.
        item_vectors: ``[N+1, D]`` (row 0 = padding, never ranked).
        targets: ``[B]`` target ids in 1..N.
        history: ``[B, T]`` items to exclude (0 = nothing), or None.
        chunk_elements: most scores materialised at once.
        ties: "strict" or "pessimistic" (see the module docstring).

    Returns:
        ``[B]`` int64 ranks, 1 = best.
    """
    target_scores = (user_vectors * item_vectors[targets]).sum(-1)  # [B]
    rows = max(1, chunk_elements // item_vectors.size(0))
    ranks = []
    for start in range(0, user_vectors.size(0), rows):
        scores = user_vectors[start : start + rows] @ item_vectors.t()  # [b, N+1]
        scores[:, 0] = -math.inf
        if history is not None:
            scores.scatter_(1, history[start : start + rows], -math.inf)
        threshold = target_scores[start : start + rows, None]  # [b, 1]
        if ties == "pessimistic":
            own = scores.gather(1, targets[start : start + rows, None]) >= threshold  # [b, 1]
            higher = (scores >= threshold).sum(1) - own.squeeze(1).long()
        else:
            higher = (scores > threshold).sum(1)
        ranks.append(higher + 1)
    return torch.cat(ranks) if ranks else targets.new_zeros(0)


def metrics_from_ranks(ranks: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    """Recall@K (= Hit@K with one target), NDCG@K and MRR@K averaged over users."""
    ranks = np.asarray(ranks, dtype=np.float64)
    out: dict[str, float] = {}
    for k in ks:
        hit = ranks <= k
        out[f"recall@{k}"] = float(hit.mean()) if ranks.size else 0.0
        out[f"ndcg@{k}"] = (
            float(np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0).mean()) if ranks.size else 0.0
        )
        out[f"mrr@{k}"] = float(np.where(hit, 1.0 / ranks, 0.0).mean()) if ranks.size else 0.0
    return out


UserFn = Callable[[Tensor, Tensor], Tensor]


@torch.no_grad()
def rank_windows(
    user_fn: UserFn,
    item_vectors: Tensor,
    data: SequenceDataset,
    windows: Windows,
    batch_size: int,
    exclude_seen: bool,
    chunk_elements: int,
    ties: str = "strict",
    shard: tuple[int, int] = (0, 1),
) -> np.ndarray:
    """Target rank of every user in ``windows`` (``[U']`` int64).

    Args:
        user_fn: ``(history [B, T], lengths [B]) -> [B, D]`` user vectors.
        item_vectors: ``[N+1, D]`` item vectors (row 0 = padding).
        data: the dataset the windows index into.
        windows: histories and targets.
        batch_size: users per batch.
        exclude_seen: drop history items from the ranking (never the target).
        chunk_elements: most scores held at once.
        ties: tie rule (see the module docstring).
        shard: ``(rank, world_size)``: score only every world_size-th batch, starting at rank;
            other users' ranks are 0. Batches are the same as in a single process, so summing
            the shards' arrays gives bit-identical ranks.
    """
    device = item_vectors.device
    require_finite("item", item_vectors[1:])  # row 0, padding, may be -inf (pop)
    # Users sorted by history length, so each batch is trimmed to similar lengths (little padding).
    order = np.argsort(windows.length, kind="stable")
    ranks, scored = [], []
    rank, world_size = shard
    for start in range(rank * batch_size, len(order), world_size * batch_size):
        rows = order[start : start + batch_size]
        scored.append(rows)
        history, length = gather(data.items, windows, rows)
        history_t = torch.from_numpy(history).to(device)
        users = user_fn(history_t, torch.from_numpy(length).to(device))  # [B, D]
        require_finite("user", users)
        targets = torch.from_numpy(windows.target[rows]).to(device)
        excluded = history_t if exclude_seen else None
        ranks.append(
            target_ranks(
                users.float(), item_vectors.float(), targets, excluded, chunk_elements, ties
            ).cpu()
        )
    result = np.zeros(len(order), dtype=np.int64)
    if ranks:
        result[np.concatenate(scored)] = torch.cat(ranks).numpy()
    return result


def require_finite(what: str, vectors: Tensor) -> None:
    """Refuse NaN/inf vectors: NaN scores compare false, which would rank every target first."""
    if not bool(torch.isfinite(vectors).all()):
        msg = (
            f"the model produces non-finite (NaN or inf) {what} vectors, so its scores mean "
            "nothing and it is not ranked. Its weights diverged in training: retrain with a "
            "lower train.lr or with train.grad_clip."
        )
        raise EclsrError(msg)


@torch.no_grad()
def rank_all(
    model: torch.nn.Module,
    data: SequenceDataset,
    windows: Windows,
    batch_size: int,
    exclude_seen: bool,
    chunk_elements: int,
    ties: str = "strict",
    shard: tuple[int, int] = (0, 1),
) -> np.ndarray:
    """Target rank of every user in ``windows`` under ``model``'s UBE (eval mode)."""
    was_training = model.training
    model.eval()
    try:
        encoder = model.encoder
        items = encoder.item_vectors(model.item_embedding, model.num_items)  # [N+1, D]
        return rank_windows(
            encoder.user_vectors,
            items,
            data,
            windows,
            batch_size,
            exclude_seen,
            chunk_elements,
            ties,
            shard,
        )
    finally:
        model.train(was_training)


def popularity_ranks(
    counts: Tensor,
    data: SequenceDataset,
    windows: Windows,
    exclude_seen: bool,
    ties: str = "strict",
) -> np.ndarray:
    """Ranks under the popularity baseline (training-interaction counts), same protocol."""

    def ones(history: Tensor, lengths: Tensor) -> Tensor:
        return torch.ones(history.size(0), 1)

    return rank_windows(ones, counts.view(-1, 1), data, windows, 4096, exclude_seen, 1 << 24, ties)
