"""2-process gloo DDP on CPU equals one process on the same global batch (issue: scale-out)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

RECIPE = """
seed = 3
data = { dataset = "synthetic", max_len = 12, synthetic_users = 300, synthetic_items = 60 }
encoder = { name = "sasrec", hidden = 16, layers = 1, heads = 1, inner_size = 32, dropout = 0.0, attn_dropout = 0.0 }
[[heads]]
name = "next_item"
[[heads]]
name = "infonce"
weight = 0.5
pooling_k = 3
[train]
epochs = 2
batch_size = 64
lr = 0.01
monitor = "valid.ndcg@10"
threads = 1
"""


def _run(args: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "ECLSR_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    # A failing rank's own error comes first; torchrun's summary of the failure comes last.
    assert proc.returncode == 0, proc.stderr[:3000] + "\n...\n" + proc.stderr[-2000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    recipe = tmp / "ddp.toml"
    recipe.write_text(RECIPE)
    single, double = tmp / "single", tmp / "double"
    _run(
        [sys.executable, "-m", "eclsr", "run", str(recipe), "--out", str(single), "--no-progress"],
        tmp,
    )
    _run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "eclsr",
            "run",
            str(recipe),
            "--out",
            str(double),
            "--no-progress",
        ],
        tmp,
    )
    return single, double


def test_parameters_after_training_match_single_process(runs):
    single, double = runs
    a = torch.load(single / "checkpoint-00002.pt", weights_only=True)["model"]
    b = torch.load(double / "checkpoint-00002.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=2e-5, msg=key)


def test_sharded_evaluation_is_exact(runs):
    """The 2-process evaluation of a model equals a single-process evaluation of the same weights."""
    from eclsr.data import load_dataset
    from eclsr.data.splits import LeaveOneOut
    from eclsr.engine.evaluate import metrics_from_ranks, rank_all
    from eclsr.engine.model import Model
    from eclsr.engine.setup import training_item_counts
    from eclsr.recipe.load import load_recipe

    _, double = runs
    recipe = load_recipe(double.parent / "ddp.toml")
    data = load_dataset(recipe.data)
    model = Model(recipe, data.num_items, training_item_counts(data))
    model.load_state_dict(torch.load(double / "checkpoint-00002.pt", weights_only=True)["model"])
    windows = LeaveOneOut(data, recipe.data.max_len).evaluation("valid")
    ranks = rank_all(
        model, data, windows, recipe.eval.batch_size, False, recipe.eval.chunk_elements
    )
    last = json.loads((double / "metrics.jsonl").read_text().splitlines()[-1])
    assert metrics_from_ranks(ranks, recipe.eval.ks) == last["valid"]
    results = json.loads((double / "results.json").read_text())
    assert results["world_size"] == 2
