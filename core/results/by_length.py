"""Paired comparisons per history-length group: where along the sequence length a gain comes from.

Sequential-recommendation gains are rarely uniform: contrastive losses are usually credited with
helping short histories. ``eclsr compare A B --by-length`` splits the users both runs ranked by the
length of the history each evaluated target had (untruncated: the items before the target, not the
``max_len`` window the model saw) and runs the paired tests inside each group.

The lengths are recomputed from the run's recipe and data (the same split the run used), so the
data file must be where the recipe says; its hash is checked against ``results.json`` first.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from eclsr.errors import EclsrError
from eclsr.results.report import RunRecord, paired_ranks
from eclsr.results.stats import PairedTest, paired_tests, per_user_metric

#: Default number of groups: quantiles of the history length (fewer when lengths repeat).
DEFAULT_GROUPS = 5


@dataclass
class LengthGroup:
    """Users whose history length lies in ``[low, high]`` and the paired tests (B − A) over them."""

    low: int
    high: int
    users: int
    tests: list[PairedTest]

    @property
    def label(self) -> str:
        """``"4"`` or ``"8–11"``."""
        return str(self.low) if self.low == self.high else f"{self.low}–{self.high}"


@dataclass(frozen=True)
class LengthSplit:
    """How users are grouped: ``edges`` are the groups' first lengths after the first one's
    (None: :data:`DEFAULT_GROUPS` quantile groups)."""

    edges: list[int] | None = None


def parse_edges(text: str) -> list[int] | None:
    """``"auto"`` → None (quantile groups); ``"5,8,12"`` → ``[5, 8, 12]`` (group starts)."""
    if text == "auto":
        return None
    try:
        edges = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        edges = []
    if not edges or any(e < 1 for e in edges) or edges != sorted(set(edges)):
        msg = (
            f"--by-length {text!r} is not a list of group starts: give increasing whole numbers "
            f">= 1 separated by commas (e.g. --by-length 5,8,12,20 for the groups below 5, 5–7, "
            f"8–11, 12–19 and 20 or more), or --by-length alone for {DEFAULT_GROUPS} quantile groups."
        )
        raise EclsrError(msg)
    return edges


def quantile_edges(lengths: np.ndarray, groups: int = DEFAULT_GROUPS) -> list[int]:
    """Group starts that cut ``lengths`` into about ``groups`` equally filled groups."""
    cuts = np.quantile(lengths, np.linspace(0, 1, groups + 1)[1:-1], method="higher")
    return sorted({int(c) for c in cuts if c > lengths.min()})


def history_lengths(run: RunRecord, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(users, lengths)``: every user the run's ``split`` scored and its untruncated history."""
    from eclsr.data.splits import make_split
    from eclsr.results.inference import check_same_data, load_run_data, load_run_recipe

    recipe = load_run_recipe(run.path)
    data = load_run_data(recipe)
    check_same_data(run.path, data)
    windows = make_split(data, sys.maxsize).evaluation(split)  # no max_len cut: the whole history
    return windows.users, windows.length


def compare_by_length(
    run_a: RunRecord,
    run_b: RunRecord,
    metrics: Sequence[str],
    split: str = "test",
    edges: list[int] | None = None,
    allow_mismatch: bool = False,
) -> list[LengthGroup]:
    """Paired tests (B − A) within each history-length group of two runs (see :func:`grouped_tests`)."""
    users, ranks_a, ranks_b = paired_ranks(run_a, run_b, split, allow_mismatch)
    lengths = users_history(run_a, split, users)
    values_a = {m: per_user_metric(ranks_a, m) for m in metrics}
    values_b = {m: per_user_metric(ranks_b, m) for m in metrics}
    return grouped_tests(lengths, values_a, values_b, edges)


def grouped_tests(
    lengths: np.ndarray,
    values_a: Mapping[str, np.ndarray],
    values_b: Mapping[str, np.ndarray],
    edges: list[int] | None = None,
) -> list[LengthGroup]:
    """Paired tests (B − A) of per-user values within each history-length group.

    ``edges`` are the first lengths of the groups after the first (None: quantile groups);
    empty groups are left out, and a group of one user gets no test (its p-values are NaN).
    """
    starts = [int(lengths.min()), *(edges if edges is not None else quantile_edges(lengths))]
    bounds = [s for s in starts if s >= lengths.min()]
    groups = []
    for low, next_low in zip(bounds, [*bounds[1:], int(lengths.max()) + 1], strict=True):
        members = (lengths >= low) & (lengths < next_low)
        if not members.any():
            continue
        tests = [_tests(values_a[m][members], values_b[m][members], m) for m in values_a]
        groups.append(LengthGroup(low, int(lengths[members].max()), int(members.sum()), tests))
    return groups


def users_history(run: RunRecord, split: str, users: np.ndarray) -> np.ndarray:
    """The history length of each user in ``users`` (the order of the run's ``ranks.npz``)."""
    known_users, known_lengths = history_lengths(run, split)
    position = np.searchsorted(known_users, users)
    position = np.minimum(position, len(known_users) - 1)
    if not np.array_equal(known_users[position], users):
        msg = (
            f"the users in {str(run.path / 'ranks.npz')!r} are not the users its recipe's data "
            f"evaluates on the {split} split; the run directory and the data do not belong together."
        )
        raise EclsrError(msg)
    return known_lengths[position]


def _tests(a: np.ndarray, b: np.ndarray, metric: str) -> PairedTest:
    if a.size >= 2:
        return paired_tests(a, b, metric)
    nan = float("nan")
    return PairedTest(
        metric, int(a.size), float(a.mean()), float(b.mean()), nan, nan, nan, nan, False
    )
