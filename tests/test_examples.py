"""Training-example construction: ``train.examples.mode`` = sequence | prefixes | windows."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from pydantic import ValidationError

from eclsr.cli.main import main
from eclsr.data.batching import epoch_order, make_batch, positions_per_epoch, targets_per_epoch
from eclsr.data.examples import training_examples
from eclsr.data.sequences import from_sequences
from eclsr.data.splits import LeaveOneOut
from eclsr.data.synthetic import generate
from eclsr.engine.train import run
from eclsr.recipe.load import validate_recipe
from eclsr.recipe.sections import ExamplesConfig
from eclsr.results.report import protocol_differences
from eclsr.testing import MirroredRanks


def small_data():
    """Users of lengths 8, 4, 3 (too short to train) and 13; items numbered by position."""
    return from_sequences(
        [[1, 2, 3, 4, 5, 6, 7, 8], [11, 12, 13, 14], [21, 22, 23], list(range(31, 44))],
        num_items=50,
    )


def rows_of(data, windows) -> list[tuple[int, list[int], int]]:
    """(user, input items, item after the last input) for every row."""
    out = []
    for u, s, n in zip(windows.users, windows.start, windows.length, strict=True):
        out.append((int(u), data.items[s : s + n].tolist(), int(data.items[s + n])))
    return out


def examples(data, mode: str, max_len: int, min_length: int = 1):
    return training_examples(data, LeaveOneOut(data, max_len).train(), mode, max_len, min_length)


def test_sequence_is_the_split_rows_unchanged():
    data = small_data()
    base = LeaveOneOut(data, 4).train()
    assert training_examples(data, base, "sequence", 4) is base


def test_prefixes_one_row_per_training_target_with_the_last_max_len_inputs():
    data = small_data()
    rows = rows_of(data, examples(data, "prefixes", 3))
    user0 = [r for r in rows if r[0] == 0]
    # user 0: 8 tests, 7 validates, so the training targets are 2..6
    assert user0 == [
        (0, [1], 2), (0, [1, 2], 3), (0, [1, 2, 3], 4), (0, [2, 3, 4], 5), (0, [3, 4, 5], 6)
    ]  # fmt: skip
    assert [r for r in rows if r[0] == 1] == [(1, [11], 12)]
    assert not [r for r in rows if r[0] == 2]  # 3 items: nothing to train on
    assert len([r for r in rows if r[0] == 3]) == 13 - 3


def test_prefix_count_and_min_length():
    data = small_data()
    assert len(examples(data, "prefixes", 50).users) == (8 - 3) + (4 - 3) + (13 - 3)
    longer = rows_of(data, examples(data, "prefixes", 3, min_length=3))
    assert all(len(inputs) >= 3 for _, inputs, _ in longer)
    assert len(longer) == (5 - 2) + 0 + (10 - 2)


def test_prefix_batches_have_one_target_per_row_at_the_last_position():
    data = small_data()
    windows = examples(data, "prefixes", 3)
    assert windows.last_only
    rows = np.arange(len(windows.users))
    batch = make_batch(data, windows, rows)
    nonzero = batch.targets > 0  # [B, T]
    assert nonzero.sum(dim=1).tolist() == [1] * len(rows)
    last = batch.targets[torch.arange(len(rows)), batch.lengths - 1]
    assert last.tolist() == [t for _, _, t in rows_of(data, windows)]
    assert targets_per_epoch(windows) == len(rows)
    assert positions_per_epoch(windows) == int(windows.length.sum())


def test_windows_tile_every_training_target_once_newest_chunk_first():
    data = small_data()
    windows = examples(data, "windows", 4)
    assert not windows.last_only
    rows = rows_of(data, windows)
    user3 = [r for r in rows if r[0] == 3]  # 10 training targets 32..41, chunks of 4
    assert user3 == [
        (3, [37, 38, 39, 40], 41),
        (3, [33, 34, 35, 36], 37),
        (3, [31, 32], 33),
    ]
    base = LeaveOneOut(data, 4).train()
    newest = [r for r in rows_of(data, base) if r[0] == 3]
    assert user3[0] == newest[0]  # chunk 0 is the sequence row


def test_windows_min_length_drops_short_older_chunks_only():
    data = small_data()
    rows = rows_of(data, examples(data, "windows", 4, min_length=3))
    assert [r for r in rows if r[0] == 3] == [(3, [37, 38, 39, 40], 41), (3, [33, 34, 35, 36], 37)]
    assert [r for r in rows if r[0] == 1] == [(1, [11], 12)]  # a newest chunk is always kept


@pytest.mark.parametrize("mode", ["sequence", "prefixes", "windows"])
@pytest.mark.parametrize("max_len", [3, 7, 50])
def test_no_validation_or_test_item_enters_a_training_row(mode, max_len):
    data = generate(num_users=60, num_items=40, seed=5)
    windows = examples(data, mode, max_len)
    first = data.offsets[windows.users]
    last_train = data.offsets[windows.users + 1] - 3  # index of the last training item
    assert (windows.start >= first).all()
    assert (windows.start + windows.length <= last_train).all()  # the shifted target too
    assert (windows.length >= 1).all() and (windows.length <= max_len).all()
    targets = set()
    for u, s, n in zip(windows.users, windows.start, windows.length, strict=True):
        positions = range(s + 1, s + n + 1) if mode != "prefixes" else [s + n]
        for p in positions:
            assert (u, p) not in targets or mode == "sequence"
            targets.add((u, p))
    if mode != "sequence":  # every training target is predicted exactly once
        expected = sum(max(int(n) - 3, 0) for n in data.lengths)
        assert len(targets) == expected == targets_per_epoch(windows)


def test_epoch_order_covers_every_example_row():
    data = generate(num_users=60, num_items=40, seed=5)
    windows = examples(data, "prefixes", 10)
    order = np.concatenate(epoch_order(windows, 32, seed=1, epoch=0, bucket=True))
    assert sorted(order.tolist()) == list(range(len(windows.users)))


def test_config_is_validated():
    assert ExamplesConfig().mode == "sequence"
    with pytest.raises(ValidationError):
        ExamplesConfig(mode="all")
    with pytest.raises(ValidationError):
        ExamplesConfig(mode="sequence", min_length=3)
    with pytest.raises(ValidationError):
        ExamplesConfig(mode="prefixes", min_length=0)


def tiny_recipe(mode: str, heads: list[dict] | None = None) -> dict:
    return {
        "seed": 3,
        "name": f"tiny-{mode}",
        "data": {"dataset": "synthetic", "max_len": 10},
        "encoder": {"name": "sasrec", "hidden": 16, "layers": 1, "heads": 1, "inner_size": 32},
        "heads": heads or [{"name": "next_item"}],
        "train": {"epochs": 1, "batch_size": 64, "examples": {"mode": mode}},
    }


ECL_HEADS = [
    {"name": "next_item"},
    {"name": "infonce", "weight": 0.1, "pooling_k": 3},
    {"name": "generator", "weight": 0.1, "encoder": {"name": "bert4rec", "layers": 1, "heads": 1}},
    {"name": "rid", "weight": 0.1},
]


@pytest.mark.parametrize("mode", ["prefixes", "windows"])
def test_every_head_trains_on_the_examples_and_the_mode_is_stamped(mode, tmp_path):
    data = generate(num_users=120, num_items=50, seed=2)
    recipe = validate_recipe(tiny_recipe(mode, ECL_HEADS))
    result = run(recipe, tmp_path / "run", dataset=data, progress=False)
    stamp = result.results["protocol"]["training_examples"]
    assert stamp == {"mode": mode, "min_length": 1}
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert set(record["losses"]) == {"next_item", "infonce", "generator", "rid"}
    assert record["targets_per_second"] > 0


def test_sequence_runs_are_unchanged_by_the_field():
    data = generate(num_users=120, num_items=50, seed=2)
    plain = tiny_recipe("sequence")
    del plain["train"]["examples"]
    first = run(validate_recipe(plain), dataset=data, progress=False).results
    second = run(validate_recipe(tiny_recipe("sequence")), dataset=data, progress=False).results
    assert first["test"] == second["test"]
    assert first["protocol"]["training_examples"] == {"mode": "sequence", "min_length": 1}


def test_training_examples_do_not_make_runs_incomparable():
    """The mode is recorded, but it is a training choice: the evaluation protocol is the same."""
    new = {"dataset": "toys", "training_examples": {"mode": "sequence", "min_length": 1}}
    assert protocol_differences({"dataset": "toys"}, new) == []  # a run recorded before the key
    prefixes = {"dataset": "toys", "training_examples": {"mode": "prefixes", "min_length": 1}}
    assert protocol_differences(new, prefixes) == []
    assert protocol_differences({"dataset": "toys"}, {"dataset": "yelp"})


def test_bench_reports_targets_for_prefixes(tmp_path):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(
        'seed = 1\ndata = { dataset = "synthetic", max_len = 12, synthetic_users = 40, '
        "synthetic_items = 30, cache = false }\n"
        'encoder = { name = "sasrec", hidden = 16, layers = 1, heads = 1, inner_size = 32 }\n'
        '[[heads]]\nname = "next_item"\n[train]\nbatch_size = 16\n'
        'examples = { mode = "prefixes" }\n'
    )
    out = tmp_path / "bench.json"
    argv = ["bench", str(recipe), "--max-batches", "2", "--warmup", "0", "--in-process",
            "--no-eval", "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    (row,) = json.loads(out.read_text())["models"]
    train = row["train"]
    assert train["targets_per_second"] > 0 and train["positions_per_second"] > 0
    assert train["targets_per_epoch"] < train["positions_per_epoch"]


def test_a_run_dir_saved_before_the_new_fields_still_resumes():
    """recipe.yaml written before train.examples / encoder.positions existed matches its recipe."""
    from eclsr.engine.checkpoint import same_recipe

    recipe = validate_recipe(tiny_recipe("sequence"))
    saved = recipe.model_dump(mode="json")
    del saved["train"]["examples"]
    del saved["encoder"]["positions"]
    assert same_recipe(saved, recipe)
    changed = validate_recipe(tiny_recipe("prefixes"))
    assert not same_recipe(saved, changed)
    saved["train"]["lr"] = 0.5
    assert not same_recipe(saved, recipe)


def _next_item_step(
    items: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor, max_len: int
):
    """A Step over a real SASRec (eval mode) for the next-item head, and the head's context."""
    from torch import nn

    from eclsr import BuildContext, Step
    from eclsr.components.step import Batch
    from eclsr.plugins.encoders.sasrec import SASRecConfig

    torch.manual_seed(0)
    table = nn.Embedding(22, 8, padding_idx=0)
    ctx = BuildContext(num_items=20, max_len=max_len, item_embedding=table, hidden_size=8)
    encoder = SASRecConfig(hidden=8, heads=1, layers=1).build(ctx).eval()
    batch = Batch(items, targets, lengths, torch.arange(items.size(0)))
    step = Step(batch, encoder, table, 20, torch.Generator().manual_seed(0))
    return step, ctx


def test_next_item_skips_zero_targets_and_slots_rescale():
    from eclsr.plugins.heads.next_item import NextItemConfig

    items = torch.tensor([[3, 5, 7, 0], [1, 2, 3, 4]])
    targets = torch.tensor([[5, 7, 9, 0], [2, 3, 4, 6]])
    lengths = torch.tensor([3, 4])
    step, ctx = _next_item_step(items, targets, lengths, max_len=10)
    logits = step.hidden @ ctx.item_embedding.weight[:21].t()  # [B, T, N+1]
    real = step.batch.mask
    full = F.cross_entropy(logits[real], targets[real])
    head = NextItemConfig().build(ctx)
    torch.testing.assert_close(head(step), full)
    slots = NextItemConfig(average_over="slots").build(ctx)
    torch.testing.assert_close(slots(step), full * 7 / (2 * 10))
    last_only = torch.zeros_like(targets)
    last_only[0, 2], last_only[1, 3] = 9, 6  # a prefix batch: one target per row
    step, _ = _next_item_step(items, last_only, lengths, max_len=10)
    expected = F.cross_entropy(logits[[0, 1], [2, 3]], torch.tensor([9, 6]))
    torch.testing.assert_close(head(step), expected)


def test_next_item_epoch_average_weighs_every_target_alike():
    """'epoch' divides by B × the epoch's targets per row, so a target's weight is the same in a
    batch of short rows as in one of long rows; 'targets' would weigh the short batch's more."""
    from eclsr.plugins.heads.next_item import NextItemConfig

    short = (torch.tensor([[3, 5, 0, 0], [1, 2, 0, 0]]), torch.tensor([[5, 7, 0, 0], [2, 3, 0, 0]]))
    long = (torch.tensor([[3, 5, 7, 2], [1, 2, 3, 4]]), torch.tensor([[5, 7, 9, 4], [2, 3, 4, 6]]))
    for (items, targets), lengths in ((short, [2, 2]), (long, [4, 4])):
        step, ctx = _next_item_step(items, targets, torch.tensor(lengths), max_len=10)
        logits = step.hidden @ ctx.item_embedding.weight[:21].t()
        real = step.batch.mask
        summed = F.cross_entropy(logits[real], targets[real], reduction="sum")
        head = NextItemConfig(average_over="epoch").build(ctx)
        step.targets_per_row = 3.0  # the epoch's mean, not this batch's (2 or 4)
        torch.testing.assert_close(head(step), summed / (2 * 3.0))
        step.world_size, step.collectives = 2, MirroredRanks(2)  # two identical ranks
        torch.testing.assert_close(head(step), summed / (2 * 3.0))
        step.world_size, step.collectives = 1, MirroredRanks(1)
        step.targets_per_row = None  # a hand-built step: the batch's own count stands in
        torch.testing.assert_close(head(step), NextItemConfig().build(ctx)(step))


@pytest.mark.parametrize(("mode", "per_row"), [("sequence", None), ("prefixes", 1.0)])
def test_the_engine_gives_every_step_the_epochs_figures_per_row(mode, per_row):
    from eclsr.engine.setup import set_up_run

    data = generate(num_users=60, num_items=40, seed=3)
    setup = set_up_run(validate_recipe(tiny_recipe(mode)), data)
    expected = targets_per_epoch(setup.windows) / len(setup.windows.users)
    assert per_row is None or expected == per_row
    assert expected > 1 or mode == "prefixes"
    step = setup.make_step(np.arange(5))
    assert step.targets_per_row == pytest.approx(expected)
    positions = positions_per_epoch(setup.windows) / len(setup.windows.users)
    assert step.positions_per_row == pytest.approx(positions)
    assert mode == "prefixes" or positions == pytest.approx(expected)  # one target per position


def test_count_mask_draws_int_ratio_n_plus_one_never_the_first_item():
    from eclsr.plugins.heads.generator import draw_count_mask

    lengths = torch.tensor([1, 2, 5, 10, 50, 0])
    gen = torch.Generator().manual_seed(0)
    masks = [draw_count_mask(gen, lengths, 50, 0.2) for _ in range(200)]
    for masked in masks:
        assert masked.sum(dim=1).tolist() == [1, 1, 2, 3, 11, 0]
        assert not masked[1:, 0].any()  # the oldest item only in a one-item row
        assert masked[0, 0]
        real = torch.arange(50).unsqueeze(0) < lengths.unsqueeze(1)
        assert not (masked & ~real).any()
    hits = torch.stack(masks)[:, 3].float().mean(dim=0)  # row of 10: 3 of positions 1..9
    assert torch.allclose(hits[1:10], torch.full((9,), 3 / 9), atol=0.12)


def test_count_strategy_is_what_the_generator_masks():
    from eclsr import BuildContext
    from eclsr.plugins.heads.generator import GeneratorConfig
    from eclsr.registry.manager import collect_registries

    collect_registries()  # resolves the generator's encoder slot

    items = torch.tensor([[3, 5, 7, 2, 9, 0], [1, 2, 3, 4, 5, 6]])
    lengths = torch.tensor([5, 6])
    step, ctx = _next_item_step(items, items, lengths, max_len=10)
    ctx = BuildContext(num_items=20, max_len=10, item_embedding=ctx.item_embedding, hidden_size=8)
    head = GeneratorConfig(
        mask_strategy="count", encoder={"name": "bert4rec", "hidden": 8, "heads": 1}
    ).build(ctx)
    out = head.generate(step, 0.2)
    assert out.masked.sum(dim=1).tolist() == [2, 2]
    assert not out.masked[:, 0].any()


def loop_prefixes(n_train: int, max_len: int) -> list[tuple[int, int]]:
    """(input start, input length) per target, written as a loop over one user's targets 1..n."""
    return [(max(0, j - max_len), j - max(0, j - max_len)) for j in range(1, n_train + 1)]


def loop_windows(n_train: int, max_len: int, min_length: int) -> list[tuple[int, int]]:
    """The ML-1m description as a loop: the newest row, then older max_len chunks going back,
    each kept while it has at least ``min_length`` inputs (items before target index ``n``)."""
    if n_train < 1:
        return []
    rows = [(max(0, n_train - max_len), min(n_train, max_len))]
    stop = n_train - max_len
    while stop > 0:  # with max_len 50 and min_length 11: "while the rest has more than 10 items"
        start = max(0, stop - max_len)
        if stop - start >= min_length:
            rows.append((start, stop - start))
        stop = start
    return rows


@pytest.mark.parametrize("max_len", [3, 5, 50])
@pytest.mark.parametrize("min_length", [1, 2, 11])
def test_vectorised_rows_equal_the_loops(max_len, min_length):
    rng = np.random.default_rng(max_len * 100 + min_length)
    lengths = rng.integers(3, 140, size=40)
    items = [list(range(1, n + 1)) for n in lengths]
    data = from_sequences(items, num_items=200)
    for mode, loop in (("prefixes", None), ("windows", loop_windows)):
        windows = examples(data, mode, max_len, min_length if mode == "windows" else 1)
        for u, n in enumerate(lengths):
            mine = windows.users == u
            got = sorted(
                zip((windows.start[mine] - data.offsets[u]).tolist(), windows.length[mine].tolist())
            )
            n_train = int(n) - 3  # targets 1..n-3 (0-based item index)
            expected = (
                loop_prefixes(n_train, max_len)
                if loop is None
                else loop(n_train, max_len, min_length)
            )
            assert got == sorted(expected), (mode, u, n)
