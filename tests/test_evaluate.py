from __future__ import annotations

import math

import numpy as np
import torch

from eclsr.engine.evaluate import metrics_from_ranks, target_ranks


def brute_force_rank(scores: np.ndarray, target: int, excluded: set[int], ties: str) -> int:
    """Rank by enumerating every item 1..N (row 0 is padding)."""
    t = scores[target]
    rank = 1
    for item in range(1, len(scores)):
        if item == target or item in excluded:
            continue
        if scores[item] > t or (ties == "pessimistic" and scores[item] == t):
            rank += 1
    return rank


def test_ranks_match_brute_force_with_ties_and_exclusion():
    gen = torch.Generator().manual_seed(0)
    users = torch.randint(-2, 3, (30, 4), generator=gen).float()  # small integers → many ties
    items = torch.randint(-2, 3, (12, 4), generator=gen).float()
    targets = torch.randint(1, 12, (30,), generator=gen)
    history = torch.randint(0, 12, (30, 5), generator=gen)
    for exclude in (False, True):
        for ties in ("strict", "pessimistic"):
            got = target_ranks(
                users, items, targets, history if exclude else None, chunk_elements=24, ties=ties
            )
            scores = (users @ items.t()).numpy()
            for b in range(30):
                excluded = set(history[b].tolist()) - {0, int(targets[b])} if exclude else set()
                assert int(got[b]) == brute_force_rank(
                    scores[b], int(targets[b]), excluded, ties
                ), (b, exclude, ties)


def test_padding_never_ranked():
    users = torch.ones(1, 1)
    items = torch.tensor([[100.0], [1.0], [2.0]])  # row 0 = padding with the highest score
    assert int(target_ranks(users, items, torch.tensor([2]))[0]) == 1


def test_constant_scores_strict_vs_pessimistic():
    users, items = torch.zeros(2, 3), torch.zeros(6, 3)
    targets = torch.tensor([1, 4])
    assert target_ranks(users, items, targets).tolist() == [1, 1]
    assert target_ranks(users, items, targets, ties="pessimistic").tolist() == [5, 5]


def test_metrics_hand_computed_and_k_beyond_catalogue():
    ranks = np.array([1, 2, 3, 11])
    m = metrics_from_ranks(ranks, [1, 3, 50])
    assert m["recall@1"] == 0.25 and m["recall@3"] == 0.75 and m["recall@50"] == 1.0
    expected_ndcg3 = (1 + 1 / math.log2(3) + 1 / math.log2(4)) / 4
    assert math.isclose(m["ndcg@3"], expected_ndcg3)
    assert math.isclose(m["mrr@3"], (1 + 1 / 2 + 1 / 3) / 4)
    expected_ndcg50 = (1 + 1 / math.log2(3) + 1 / math.log2(4) + 1 / math.log2(12)) / 4
    assert math.isclose(m["ndcg@50"], expected_ndcg50)
