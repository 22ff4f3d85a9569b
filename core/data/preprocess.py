"""Interactions → SequenceDataset: filter, order, dedupe, k-core, remap ids, split.

Steps, in order (each an explicit ``data`` option; every dropped row is counted):

1. ``rating_threshold`` and ``time_window`` filters.
2. Chronological order per user: sort by timestamp; equal timestamps keep file order
   (``tie_break = "file_order"``, a stable sort) or go by raw item id (``"item_id"``). Files
   without timestamps (sequence and pair files) are already in order.
3. ``dedupe``: keep every repeat, or the first / last occurrence of each (user, item).
4. Iterative user/item k-core until a fixed point.
5. ``min_length`` check (error or drop).
6. Id remapping: users and items are numbered by their raw id, sorted numerically when every id
   is an integer, else as text. Items get 1..N (0 = padding), users 0..U-1. The raw ids are kept
   in ``item_vocab`` / ``user_vocab``, so the same interactions in any format give identical arrays.
7. ``split = "time"``: per-user split points from global timestamp quantiles.

Everything is vectorised numpy; memory stays proportional to the number of interactions.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from eclsr.components.readers import Interactions
from eclsr.data.config import DataConfig
from eclsr.data.parsing import canonical_ids
from eclsr.data.sequences import SequenceDataset
from eclsr.errors import DataError


def factorize(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes ``[n]`` int64 and the sorted distinct raw ids as strings (numeric order if all ints)."""
    if raw.dtype.kind == "O":
        raw = raw.astype(str)
    uniq, codes = np.unique(raw, return_inverse=True)
    if raw.dtype.kind in "iu":
        return codes.astype(np.int64), uniq.astype(str)
    vocab = np.char.decode(uniq, "utf-8", errors="replace") if uniq.dtype.kind == "S" else uniq
    try:
        numeric = uniq.astype(np.int64)
    except (ValueError, OverflowError):
        return codes.astype(np.int64), vocab
    order = np.argsort(numeric, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[codes].astype(np.int64), vocab[order]


def k_core_mask(users: np.ndarray, items: np.ndarray, k_user: int, k_item: int) -> np.ndarray:
    """``[n]`` bool: rows of the maximal sub-log where every user and item has >= k rows.

    Removes all violating users and items at once and repeats until nothing changes; the maximal
    k-core is unique, so this equals the usual alternating procedure.
    """
    keep = np.ones(len(users), dtype=bool)
    while True:
        user_count = np.bincount(users[keep], minlength=int(users.max(initial=-1)) + 1)
        item_count = np.bincount(items[keep], minlength=int(items.max(initial=-1)) + 1)
        bad = keep & ((user_count[users] < k_user) | (item_count[items] < k_item))
        if not bad.any():
            return keep
        keep &= ~bad


def preprocess(inter: Interactions, config: DataConfig) -> tuple[SequenceDataset, dict[str, int]]:
    """Run the steps above; return the dataset and the row counts (read, dropped per reason, kept)."""
    inter = canonical(inter)
    counts: dict[str, int] = {"rows read": len(inter)}
    counts.update({k: v for k, v in (inter.dropped or {}).items() if v})
    rows = np.flatnonzero(_filter_mask(inter, config, counts))
    users, user_vocab = factorize(inter.users[rows])
    items, item_vocab = factorize(inter.items[rows])
    order = _chronological(inter, rows, users, items, config)
    rows, users, items = rows[order], users[order], items[order]
    keep = _dedupe_mask(users, items, config.dedupe)
    counts["duplicates"] = int((~keep).sum())
    k_item = config.k_core if config.item_k_core is None else config.item_k_core
    core = k_core_mask(users[keep], items[keep], config.k_core, k_item)
    counts["k-core"] = int((~core).sum())
    keep[keep] = core
    keep &= _length_mask(inter, rows, users, keep, user_vocab, config, counts)
    rows, users, items = rows[keep], users[keep], items[keep]
    if not len(rows):
        dropped = ", ".join(f"{k}: {v}" for k, v in counts.items() if k != "rows read" and v)
        msg = f"{inter.source}: no interactions left after preprocessing ({len(inter)} read; dropped {dropped}). Relax the filters (k_core, rating_threshold, time_window)."
        raise DataError(msg)
    counts = {k: v for k, v in counts.items() if v or k == "rows read"} | {"rows kept": len(rows)}
    used_users, users = np.unique(users, return_inverse=True)
    used_items, items = np.unique(items, return_inverse=True)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(users))]).astype(np.int64)
    data = SequenceDataset(
        items=(items + 1).astype(np.int64),
        offsets=offsets,
        num_items=len(used_items),
        item_vocab=[""] + item_vocab[used_items].tolist(),
        user_vocab=user_vocab[used_users].tolist(),
    )
    if config.split == "time":
        data.split_points, cutoffs = time_split_points(inter, rows, users, offsets, config)
        data.protocol["time_cutoffs"] = cutoffs
    return data, counts


def canonical(inter: Interactions) -> Interactions:
    """``inter`` with ids under the one id rule and its timestamps checked (any reader).

    Raises:
        DataError: a missing id or a NaN/infinite timestamp, naming its line (or row).
    """
    users = canonical_ids(inter.users, inter.lines, inter.source, "user")
    items = canonical_ids(inter.items, inter.lines, inter.source, "item")
    if inter.timestamps is not None:
        bad = np.flatnonzero(~np.isfinite(inter.timestamps))
        if bad.size:
            row = int(bad[0])
            where = (
                f"{inter.source}:{inter.lines[row]}"
                if inter.lines is not None
                else f"{inter.source} row {row}"
            )
            msg = (
                f"{where}: timestamp {inter.timestamps[row]} is not a finite number ({bad.size} "
                "such row(s)); it would put the event anywhere in the history. Fix or drop the rows."
            )
            raise DataError(msg)
    return dataclasses.replace(inter, users=users, items=items)


def _filter_mask(inter: Interactions, config: DataConfig, counts: dict[str, int]) -> np.ndarray:
    keep = np.ones(len(inter), dtype=bool)
    if config.rating_threshold is not None:
        ratings = _require(inter.ratings, inter, "rating", "rating_threshold")
        passed = ratings >= config.rating_threshold
        counts["below rating threshold"] = int((~passed).sum())
        keep &= passed
    if config.time_window is not None:
        times = _require(inter.timestamps, inter, "timestamp", "time_window")
        start, end = config.time_window
        inside = (times >= start) & (times <= end)
        counts["outside time window"] = int((~inside).sum())
        keep &= inside
    return keep


def _require(values: np.ndarray | None, inter: Interactions, what: str, option: str) -> np.ndarray:
    if values is None:
        msg = f'{inter.source} has no {what} column, but data.{option} needs one. Map it with data.columns = {{{what} = "<column>"}} or unset data.{option}.'
        raise DataError(msg)
    return values


def _chronological(
    inter: Interactions, rows: np.ndarray, users: np.ndarray, items: np.ndarray, config: DataConfig
) -> np.ndarray:
    """Permutation putting rows in (user, time, tie-break) order; stable w.r.t. file order."""
    if inter.chronological or inter.timestamps is None:
        return np.argsort(users, kind="stable")
    times = inter.timestamps[rows]
    keys = (times, users) if config.tie_break == "file_order" else (items, times, users)
    return np.lexsort(keys)


def _dedupe_mask(users: np.ndarray, items: np.ndarray, mode: str) -> np.ndarray:
    keep = np.ones(len(users), dtype=bool)
    if mode == "all" or not len(users):
        return keep
    key = users * (int(items.max()) + 1) + items
    if mode == "first":
        _, index = np.unique(key, return_index=True)
    else:
        _, reverse = np.unique(key[::-1], return_index=True)
        index = len(key) - 1 - reverse
    keep[:] = False
    keep[index] = True
    return keep


def _length_mask(
    inter: Interactions,
    rows: np.ndarray,
    users: np.ndarray,
    keep: np.ndarray,
    user_vocab: np.ndarray,
    config: DataConfig,
    counts: dict[str, int],
) -> np.ndarray:
    lengths = np.bincount(users[keep], minlength=len(user_vocab))
    short = (lengths > 0) & (lengths < config.min_length)
    if not short.any():
        return np.ones(len(users), dtype=bool)
    if config.short_sequences == "error":
        user = int(np.flatnonzero(short)[0])
        first = int(np.flatnonzero(keep & (users == user))[0])
        where = (
            f"{inter.source}:{inter.lines[rows[first]]}"
            if inter.lines is not None
            else inter.source
        )
        msg = (
            f"{where}: user {str(user_vocab[user])!r} has {lengths[user]} interaction(s) after preprocessing, "
            f"fewer than data.min_length = {config.min_length} that the {config.split} split needs "
            f"({int(short.sum())} such user(s)). Set data.short_sequences = 'drop' to drop them, or lower min_length."
        )
        raise DataError(msg)
    drop = short[users] & keep
    counts["short sequences"] = int(drop.sum())
    return ~drop


def time_split_points(
    inter: Interactions,
    rows: np.ndarray,
    users: np.ndarray,
    offsets: np.ndarray,
    config: DataConfig,
) -> tuple[np.ndarray, list[float]]:
    """Per-user split points ``[U, 2]`` int64 and the two global timestamp cut-offs.

    Row ``u`` holds how many of user ``u``'s items precede the validation and the test cut-off:
    items ``[:p0]`` train, ``[p0:p1]`` are validation targets, ``[p1:]`` test targets.
    """
    times = _require(
        None if inter.chronological else inter.timestamps, inter, "timestamp", "split = 'time'"
    )
    times = times[rows]
    cut_valid, cut_test = np.quantile(times, config.time_split)
    num_users = len(offsets) - 1
    before_valid = np.bincount(users, weights=times < cut_valid, minlength=num_users)
    before_test = np.bincount(users, weights=times < cut_test, minlength=num_users)
    points = np.stack([before_valid, before_test], axis=1).astype(np.int64)
    return points, [float(cut_valid), float(cut_test)]
