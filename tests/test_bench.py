"""Smoke test of ``eclsr bench`` (no timing assertions) and checks of its FLOP formulas."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eclsr.cli.main import main
from eclsr.engine.bench import batch_flops
from eclsr.plugins.heads.generator import expected_masked
from eclsr.recipe.load import validate_recipe

RECIPE = """
seed = 1
data = { dataset = "synthetic", max_len = 12, synthetic_users = 40, synthetic_items = 30, cache = false }
encoder = { name = "sasrec", hidden = 16, layers = 1, heads = 1, inner_size = 32 }
[[heads]]
name = "next_item"
[[heads]]
name = "infonce"
weight = 0.1
[[heads]]
name = "generator"
weight = 0.1
encoder = { name = "bert4rec", hidden = 16, layers = 1, heads = 1, inner_size = 32 }
[[heads]]
name = "rid"
weight = 0.1
[train]
batch_size = 16
[eval]
batch_size = 16
"""


def test_bench_writes_json_with_every_key(tmp_path):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(RECIPE)
    out = tmp_path / "bench.json"
    argv = [
        "bench",
        str(recipe),
        "--max-batches",
        "1",
        "--warmup",
        "1",
        "--in-process",
        "--profile",
        "1",
        "--compare-epoch-seconds",
        "10",
        "--json",
        str(out),
    ]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    (row,) = report["models"]
    assert {
        "model",
        "dataset",
        "users",
        "items",
        "matmul_gflops",
        "glibc_tunables",
        "peak_rss_mib",
        "train",
        "eval",
        "profile",
        "speedup_vs_reference",
    } <= row.keys()
    train = row["train"]
    assert train["epoch_mode"] == "extrapolated" and train["batches_timed"] == 1
    assert train["batches_per_epoch"] == 3  # 40 users, all >= 4 items, batches of 16
    for key in ("positions_per_second", "seconds_per_epoch", "model_flops_per_second", "mfu"):
        assert train[key] > 0, key
    assert row["eval"]["users"] == 40 and row["eval"]["users_per_second"] > 0
    assert row["peak_rss_mib"] > 0 and row["matmul_gflops"]["peak"] > 0
    assert row["profile"] and {"op", "self_cpu_s", "share", "calls"} <= row["profile"][0].keys()


def test_full_epoch_mode_when_max_batches_covers_the_epoch(tmp_path):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(
        RECIPE.replace('name = "infonce"', 'name = "infonce"\nview = { name = "dropout" }')
    )
    out = tmp_path / "bench.json"
    assert (
        main(
            [
                "bench",
                str(recipe),
                "--max-batches",
                "99",
                "--warmup",
                "0",
                "--in-process",
                "--no-eval",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    (row,) = json.loads(out.read_text())["models"]
    assert row["train"]["epoch_mode"] == "full" and row["train"]["batches_timed"] == 3
    assert "eval" not in row


def test_flop_formulas_match_a_hand_count(registries):
    import tomllib

    recipe = validate_recipe(tomllib.loads(RECIPE))
    d, inner, width, n = 16, 32, 5, 30
    lengths = np.array([5, 3])
    per_token = 2 * (4 * d * d + 2 * d * inner) + 4 * width * d
    assert recipe.encoder.forward_flops(8, width) == 8 * per_token
    masked = expected_masked(lengths, 0.2)
    assert masked == pytest.approx(0.2 * 8 + 0.8**5 + 0.8**3)
    ube = 8 * per_token
    # One layer, so it is the last: keys and values at all 8 tokens, the rest at the masked ones.
    generator = 8 * 2 * 2 * d * d + masked * (per_token - 2 * 2 * d * d)
    assert recipe.encoder.forward_flops(8, width, masked) == pytest.approx(generator)
    expected = (
        3 * ube
        + 6 * 8 * (n + 1) * d  # UBE pass 1 + next-item projection
        + 3 * ube  # dropout view: its pooled window (k = 5) covers all 8 tokens here
        + 6 * 2 * 2 * d  # InfoNCE similarities
        + 3 * generator
        + 6 * masked * (n + 1) * d  # generator pass and loss; S'' reuses the loss's argmax
        + 3 * ube  # RID pass (add conditioning); the generator pass is shared
    )
    assert batch_flops(recipe, lengths, width, n) == pytest.approx(expected)
    # Two layers and a window shorter than the rows: only the last layer shrinks.
    two = recipe.encoder.model_copy(update={"layers": 2})
    window = 3 + 3  # min(3, 5) + min(3, 3)
    last = 8 * 2 * 2 * d * d + window * (per_token - 2 * 2 * d * d)
    assert two.forward_flops(8, width, window) == pytest.approx(8 * per_token + last)


def test_a_head_without_a_flop_formula_turns_mfu_off(registries):
    import tomllib

    recipe = validate_recipe(tomllib.loads(RECIPE))
    assert batch_flops(recipe, np.array([5, 3]), 5, 30) is not None
    no_formula = recipe.model_copy(update={"heads": [*recipe.heads[:1], _NoFormulaHead()]})
    assert batch_flops(no_formula, np.array([5, 3]), 5, 30) is None


class _NoFormulaHead:
    name = "third_party"
    weight = 1.0

    def train_flops(self, shape):
        return None
