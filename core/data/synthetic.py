"""A tiny synthetic dataset with real sequential structure, generated offline from a seed.

Items follow a sparse Markov chain: each item has a few uniformly drawn successors, and a user's next item is one
of its current item's successors with probability ``follow``, otherwise a popularity-weighted
random item (Zipf skew). A sequence model can learn the chain; a popularity ranking cannot, so an
end-to-end run should clearly beat popularity.
"""

from __future__ import annotations

import numpy as np

from eclsr.data.sequences import SequenceDataset


def generate(
    num_users: int = 2000,
    num_items: int = 500,
    seed: int = 0,
    successors: int = 3,
    follow: float = 0.8,
    min_length: int = 5,
    mean_extra_length: float = 10.0,
    max_length: int = 60,
) -> SequenceDataset:
    """Generate a dataset of ``num_users`` sequences over items 1..``num_items``.

    Args:
        num_users: number of sequences.
        num_items: catalogue size N.
        seed: seed of the numpy generator (the data is a pure function of the arguments).
        successors: successors per item in the Markov chain.
        follow: probability of following the chain rather than jumping to a popular item.
        min_length: shortest sequence.
        mean_extra_length: mean of the geometric number of items beyond ``min_length``.
        max_length: longest sequence.
    """
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, num_items + 1) ** 0.8
    popularity /= popularity.sum()
    chain = rng.integers(0, num_items, size=(num_items, successors))  # [N, S], uniform successors
    extra = rng.geometric(1.0 / (1.0 + mean_extra_length), size=num_users) - 1
    lengths = np.minimum(min_length + extra, max_length).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    items = np.empty(int(offsets[-1]), dtype=np.int64)
    current = rng.choice(num_items, size=num_users, p=popularity)
    for t in range(int(lengths.max())):  # one vectorised step per position, all users at once
        alive = lengths > t
        items[offsets[:-1][alive] + t] = current[alive]
        jump = rng.random(num_users) >= follow
        successor = chain[current, rng.integers(0, successors, size=num_users)]
        current = np.where(jump, rng.choice(num_items, size=num_users, p=popularity), successor)
    data = SequenceDataset(items + 1, offsets, num_items, name="synthetic")
    data.source_hash = f"synthetic:{num_users}:{num_items}:{seed}:{successors}:{follow}"
    data.item_vocab = [""] + [str(i) for i in range(1, num_items + 1)]
    data.user_vocab = [str(u) for u in range(1, num_users + 1)]
    data.protocol = {"dataset": "synthetic", "generator": data.source_hash}
    return data
