"""Behavioural tests of the built-in mild and invasive augmentations (ECL-SR §2.2)."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import pytest
import torch
from pydantic import ValidationError
from torch import Tensor, nn

import eclsr
from eclsr.plugins.augment.crop import CropConfig
from eclsr.plugins.augment.delete import DeleteConfig
from eclsr.plugins.augment.dropout import DropoutViewConfig
from eclsr.plugins.augment.insert import InsertConfig
from eclsr.plugins.augment.normalize import NormalizeConfig
from eclsr.plugins.augment.perturb import PerturbConfig
from eclsr.plugins.augment.random_substitution import RandomSubstitutionConfig
from eclsr.plugins.augment.reorder import ReorderConfig
from eclsr.registry.manager import collect_registries

NUM_ITEMS, MAX_LEN, DIM = 30, 10, 8

INVASIVE = [
    CropConfig(),
    CropConfig(ratio=0.5),
    ReorderConfig(),
    ReorderConfig(ratio=1.0),
    InsertConfig(),
    InsertConfig(times=4),
    DeleteConfig(),
    DeleteConfig(times=5),
    RandomSubstitutionConfig(),
    RandomSubstitutionConfig(ratio=1.0),
]


class TinyEncoder(eclsr.Encoder):
    """Embedding → dropout → linear: two passes differ in train mode."""

    def __init__(self, embedding: nn.Embedding, p: float = 0.5) -> None:
        super().__init__()
        self.embedding, self.dropout, self.proj = embedding, nn.Dropout(p), nn.Linear(DIM, DIM)
        self.hidden_size = DIM

    def forward(self, items: Tensor, lengths: Tensor, input_offset: Tensor | None = None) -> Tensor:
        return self.proj(self.dropout(self.embedding(items)))


def make_ctx(num_items: int = NUM_ITEMS, max_len: int = MAX_LEN) -> eclsr.BuildContext:
    embedding = nn.Embedding(num_items + 2, DIM, padding_idx=0)
    return eclsr.BuildContext(
        num_items=num_items, max_len=max_len, item_embedding=embedding, hidden_size=DIM
    )


def make_step(
    items: Tensor, lengths: Tensor, seed: int = 0, num_items: int = NUM_ITEMS
) -> eclsr.Step:
    embedding = nn.Embedding(num_items + 2, DIM, padding_idx=0)
    batch = eclsr.Batch(items, torch.zeros_like(items), lengths, torch.arange(len(items)))
    return eclsr.Step(
        batch=batch,
        encoder=TinyEncoder(embedding),
        item_embedding=embedding,
        num_items=num_items,
        generator=torch.Generator().manual_seed(seed),
    )


def random_batch(
    rows: int, seed: int = 0, num_items: int = NUM_ITEMS, max_len: int = MAX_LEN
) -> tuple[Tensor, Tensor]:
    """Right-padded rows of distinct items (so every item identifies its position)."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_len + 1, (rows,), generator=gen)
    lengths[0] = max_len  # the batch is trimmed to its longest row
    items = torch.zeros(rows, max_len, dtype=torch.long)
    for b, n in enumerate(lengths.tolist()):
        items[b, :n] = torch.randperm(num_items, generator=gen)[:n] + 1
    return items, lengths


def run(
    config: eclsr.InvasiveAugmentationConfig,
    items: Tensor,
    lengths: Tensor,
    seed: int = 0,
    ctx: eclsr.BuildContext | None = None,
) -> eclsr.AugmentedBatch:
    ctx = ctx or make_ctx()
    step = make_step(items, lengths, seed, ctx.num_items)
    return config.build(ctx)(step, items.clone(), lengths.clone())


def rows(out: eclsr.AugmentedBatch) -> list[list[int]]:
    return [out.items[b, :n].tolist() for b, n in enumerate(out.lengths.tolist())]


def original_rows(items: Tensor, lengths: Tensor) -> list[list[int]]:
    return [items[b, :n].tolist() for b, n in enumerate(lengths.tolist())]


def is_subsequence(small: list[int], big: list[int]) -> bool:
    it = iter(big)
    return all(x in it for x in small)


def window(n: int, ratio: float) -> int:
    return max(1, math.floor(ratio * n + 1e-9))


# --------------------------------------------------------------------------- registration


def test_all_augmentations_are_registered_with_their_intensity() -> None:
    regs = collect_registries()
    assert {"dropout", "perturb", "normalize"} <= set(regs.mild.names())
    invasive = {"random_substitution", "insert", "delete", "crop", "reorder"}
    assert invasive <= set(regs.invasive.names())
    assert regs.invasive.get("crop") is CropConfig
    assert regs.mild.get("dropout") is DropoutViewConfig


@pytest.mark.parametrize(
    ("cls", "field", "value"),
    [
        (CropConfig, "ratio", 0.0),
        (CropConfig, "ratio", 1.5),
        (ReorderConfig, "ratio", -0.1),
        (RandomSubstitutionConfig, "ratio", 0.0),
        (RandomSubstitutionConfig, "attempts", 0),
        (InsertConfig, "times", 0),
        (DeleteConfig, "times", 0),
        (PerturbConfig, "eps", 0.0),
    ],
)
def test_configs_reject_out_of_range_values(cls: type, field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        cls(**{field: value})


# --------------------------------------------------------------------------- invasive contract


@pytest.mark.parametrize("config", INVASIVE, ids=repr)
def test_invasive_output_is_a_valid_right_padded_batch(
    config: eclsr.InvasiveAugmentationConfig,
) -> None:
    items, lengths = random_batch(64)
    before = items.clone()
    out = run(config, items, lengths)
    assert out.items.dtype == torch.long and out.lengths.shape == lengths.shape
    assert out.items.size(1) == int(out.lengths.max())
    assert ((out.lengths >= 1) & (out.lengths <= MAX_LEN)).all()
    real = eclsr.real_mask(out.lengths, out.items.size(1))
    assert (out.items[~real] == 0).all(), "padding must stay 0"
    assert ((out.items[real] >= 1) & (out.items[real] <= NUM_ITEMS)).all()
    if out.replaced is not None:
        assert out.replaced.dtype == torch.bool and out.replaced.shape == out.items.shape
        assert not out.replaced[~real].any()
    torch.testing.assert_close(items, before)  # the input is not modified in place


@pytest.mark.parametrize("config", INVASIVE, ids=repr)
def test_invasive_is_reproducible_from_the_generator_seed(
    config: eclsr.InvasiveAugmentationConfig,
) -> None:
    items, lengths = random_batch(64)
    first, again, other = (run(config, items, lengths, seed) for seed in (0, 0, 1))
    torch.testing.assert_close(first.items, again.items)
    torch.testing.assert_close(first.lengths, again.lengths)
    assert not (
        first.items.shape == other.items.shape
        and torch.equal(first.items, other.items)
        and torch.equal(first.lengths, other.lengths)
    ), "a different seed should give a different augmentation"


# --------------------------------------------------------------------------- crop


@pytest.mark.parametrize("ratio", [0.8, 0.5, 0.2, 1.0])
def test_crop_keeps_a_contiguous_window_of_the_right_length(ratio: float) -> None:
    items, lengths = random_batch(200)
    out = run(CropConfig(ratio=ratio), items, lengths)
    starts = set()
    for row, original in zip(rows(out), original_rows(items, lengths), strict=True):
        assert len(row) == window(len(original), ratio)
        start = original.index(row[0])
        assert original[start : start + len(row)] == row
        starts.add(start)
    if ratio < 1:
        assert len(starts) > 1, "the window start should vary"


def test_crop_of_length_one_rows_is_the_identity() -> None:
    items = torch.tensor([[5], [7]])
    out = run(CropConfig(ratio=0.5), items, torch.tensor([1, 1]))
    torch.testing.assert_close(out.items, items)


# --------------------------------------------------------------------------- reorder


@pytest.mark.parametrize("ratio", [0.2, 0.5, 1.0])
def test_reorder_permutes_one_contiguous_window_and_leaves_the_rest(ratio: float) -> None:
    items, lengths = random_batch(200)
    out = run(ReorderConfig(ratio=ratio), items, lengths)
    torch.testing.assert_close(out.lengths, lengths)
    changed_rows = 0
    for row, original in zip(rows(out), original_rows(items, lengths), strict=True):
        assert sorted(row) == sorted(original)
        moved = [t for t, (a, b) in enumerate(zip(row, original, strict=True)) if a != b]
        if moved:
            changed_rows += 1
            assert moved[-1] - moved[0] + 1 <= window(len(original), ratio)
            span = slice(moved[0], moved[-1] + 1)
            assert sorted(row[span]) == sorted(original[span])
    assert changed_rows > 0


def test_reorder_window_is_a_uniform_permutation() -> None:
    items = torch.tensor([[1, 2, 3]]).repeat(3000, 1)
    out = run(ReorderConfig(ratio=1.0), items, torch.full((3000,), 3))
    counts = Counter(tuple(r) for r in out.items.tolist())
    assert set(counts) == set(itertools.permutations([1, 2, 3]))
    assert all(abs(c / 3000 - 1 / 6) < 0.04 for c in counts.values())


# --------------------------------------------------------------------------- insert


@pytest.mark.parametrize("times", [1, 2, 4])
def test_insert_adds_items_from_other_rows_and_respects_max_len(times: int) -> None:
    # every row holds its own block of ids, so an inserted item's origin is known
    lengths = torch.tensor([10, 3, 8, 1, 6] * 20)
    items = torch.zeros(len(lengths), MAX_LEN, dtype=torch.long)
    for b, n in enumerate(lengths.tolist()):
        items[b, :n] = torch.arange(1, n + 1) + MAX_LEN * b
    out = run(InsertConfig(times=times), items, lengths, ctx=make_ctx(num_items=1000))
    torch.testing.assert_close(out.lengths, (lengths + times).clamp(max=MAX_LEN))
    batch_items = set(items[items > 0].tolist())
    for row, original in zip(rows(out), original_rows(items, lengths), strict=True):
        survivors = [x for x in row if x in original]  # in order; only the oldest may go
        assert survivors == original[len(original) - len(survivors) :]
        assert len(survivors) >= len(original) + times - MAX_LEN
        inserted = [x for x in row if x not in original]
        if len(original) + times <= MAX_LEN:
            assert len(inserted) == times and survivors == original
        assert set(inserted) <= batch_items, "inserted items come from other rows' histories"


def test_insert_can_widen_the_batch_and_uses_both_ends() -> None:
    items = (torch.arange(1, 1 + 3 * 400).view(400, 3)).contiguous()
    lengths = torch.full((400,), 3)
    out = run(InsertConfig(times=1), items, lengths, ctx=make_ctx(num_items=1200))
    assert out.items.shape == (400, 4)
    slots = Counter(
        next(t for t, x in enumerate(row) if x not in orig)
        for row, orig in zip(out.items.tolist(), items.tolist(), strict=True)
    )
    assert set(slots) == {0, 1, 2, 3}


def test_insert_into_a_single_row_batch_draws_from_that_row() -> None:
    items, lengths = torch.tensor([[4, 9]]), torch.tensor([2])
    out = run(InsertConfig(times=3), items, lengths)
    assert out.lengths.item() == 5
    assert set(out.items[0].tolist()) <= {4, 9}


# --------------------------------------------------------------------------- delete


@pytest.mark.parametrize("times", [1, 2, 5])
def test_delete_removes_items_but_never_below_one(times: int) -> None:
    items, lengths = random_batch(200)
    out = run(DeleteConfig(times=times), items, lengths)
    torch.testing.assert_close(out.lengths, (lengths - times).clamp(min=1))
    for row, original in zip(rows(out), original_rows(items, lengths), strict=True):
        assert is_subsequence(row, original)
        if len(original) == 1:
            assert row == original


def test_delete_picks_every_position() -> None:
    items = torch.tensor([[1, 2, 3, 4]]).repeat(400, 1)
    out = run(DeleteConfig(times=1), items, torch.full((400,), 4))
    missing = Counter(({1, 2, 3, 4} - set(r)).pop() for r in out.items.tolist())
    assert set(missing) == {1, 2, 3, 4}


# --------------------------------------------------------------------------- random substitution


@pytest.mark.parametrize("ratio", [0.2, 0.5, 1.0])
def test_random_substitution_replaces_ratio_of_items_with_absent_ones(ratio: float) -> None:
    num_items = 1000  # collisions that survive every redraw are then vanishingly rare
    ctx = make_ctx(num_items=num_items)
    items, lengths = random_batch(300, num_items=num_items)
    out = run(RandomSubstitutionConfig(ratio=ratio), items, lengths, ctx=ctx)
    torch.testing.assert_close(out.lengths, lengths)
    assert out.replaced is not None
    assert torch.equal(out.replaced, out.items != items[:, : out.items.size(1)])
    expected = torch.ceil(lengths.double() * ratio - 1e-9).long()
    torch.testing.assert_close(out.replaced.sum(1), expected)
    for row, original in zip(rows(out), original_rows(items, lengths), strict=True):
        new = [x for x, y in zip(row, original, strict=True) if x != y]
        assert not set(new) & set(original), "substitutes must not be in the user's history"
    fraction = out.replaced.sum() / lengths.sum()
    assert ratio <= fraction.item() < ratio + 0.15  # rounding up adds at most one per row


def test_random_substitution_keeps_items_when_every_draw_collides() -> None:
    ctx = make_ctx(num_items=4)
    items = torch.tensor([[1, 2, 3, 4], [2, 1, 0, 0]])
    lengths = torch.tensor([4, 2])
    out = run(RandomSubstitutionConfig(ratio=1.0, attempts=30), items, lengths, ctx=ctx)
    assert out.replaced is not None
    assert torch.equal(out.items[0], items[0]) and not out.replaced[0].any()
    assert set(out.items[1, :2].tolist()) <= {3, 4} and out.replaced[1, :2].all()


# --------------------------------------------------------------------------- mild views


def hidden_states(seed: int = 0) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(4, 6, DIM, generator=gen, requires_grad=True)


def test_perturb_adds_an_offset_of_norm_eps_in_the_direction_of_h() -> None:
    items, lengths = random_batch(4)
    hidden = hidden_states()
    view = PerturbConfig(eps=0.3).build(make_ctx())(make_step(items, lengths), hidden)
    delta = (view - hidden).detach()
    torch.testing.assert_close(delta.norm(dim=-1), torch.full((4, 6), 0.3))
    assert (delta * hidden.detach() >= 0).all(), "Δ = Δ̂ ⊙ h with Δ̂ >= 0 keeps the sign of h"
    view.sum().backward()
    assert hidden.grad is not None and hidden.grad.abs().sum() > 0


def test_perturb_is_reproducible_from_the_generator_seed() -> None:
    items, lengths = random_batch(4)
    hidden = hidden_states().detach()
    perturb = PerturbConfig().build(make_ctx())
    first, again, other = (perturb(make_step(items, lengths, s), hidden) for s in (0, 0, 1))
    torch.testing.assert_close(first, again)
    assert not torch.allclose(first, other)


def test_normalize_gives_unit_norms_in_the_same_direction() -> None:
    items, lengths = random_batch(4)
    hidden = hidden_states()
    view = NormalizeConfig().build(make_ctx())(make_step(items, lengths), hidden)
    torch.testing.assert_close(view.norm(dim=-1), torch.ones(4, 6))
    torch.testing.assert_close(view * hidden.norm(dim=-1, keepdim=True), hidden)
    zero = NormalizeConfig().build(make_ctx())(make_step(items, lengths), torch.zeros(1, 2, DIM))
    assert torch.isfinite(zero).all()


def test_dropout_view_is_a_fresh_stochastic_pass_with_gradients() -> None:
    torch.manual_seed(0)  # nn.Dropout draws from torch's global RNG (seeded by the training loop)
    items, lengths = random_batch(4)
    step = make_step(items, lengths)
    view = DropoutViewConfig().build(make_ctx())(step, step.hidden)
    assert view.shape == step.hidden.shape
    assert not torch.allclose(view, step.hidden)
    view.sum().backward()
    assert step.encoder.proj.weight.grad is not None
    assert step.encoder.proj.weight.grad.abs().sum() > 0


def test_dropout_view_equals_the_first_pass_in_eval_mode() -> None:
    items, lengths = random_batch(4)
    step = make_step(items, lengths)
    step.encoder.eval()
    view = DropoutViewConfig().build(make_ctx())(step, step.hidden)
    torch.testing.assert_close(view, step.hidden)
