"""`eclsr resume RUN --set train.patience=N --out NEW`: a stopped run trained on as if started so."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

from eclsr.cli.main import main
from eclsr.engine import rundir
from eclsr.engine.extend import check_extensible, extended_recipe
from eclsr.errors import EclsrError
from eclsr.recipe.load import validate_recipe

# 80 users and recall@5 as the monitor: the validation metric moves in steps of 1/80 and often
# stays level, so patience 1 stops this run at epoch 2 of 10 (asserted below, so the test
# cannot pass vacuously), and patience 3 runs on to epoch 10.
RECIPE = """
seed = 5
data = { dataset = "synthetic", max_len = 12, synthetic_users = 80, synthetic_items = 120 }
encoder = { name = "sasrec", hidden = 16, layers = 1, heads = 1, inner_size = 32, dropout = 0.3, attn_dropout = 0.3 }
[[heads]]
name = "next_item"
[[heads]]
name = "infonce"
weight = 0.1
pooling_k = 3
[[heads]]
name = "generator"
weight = 0.1
encoder = { name = "bert4rec", layers = 1, heads = 1 }
[[heads]]
name = "rid"
weight = 0.1
[train]
epochs = 10
batch_size = 64
lr = 0.02
patience = 1
monitor = "valid.recall@5"
threads = 1
"""


def _digests(run_dir: Path) -> dict[str, str]:
    """Every file of a run but its (empty) lock file, which a copy holds while reading it."""
    files = (f for f in sorted(run_dir.iterdir()) if f.name != rundir.LOCK)
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def _epochs_without_timings(run_dir: Path) -> list[dict]:
    timing = ("train_seconds", "eval_seconds", "positions_per_second", "targets_per_second")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in record.items() if k not in timing} for record in records]


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A run stopped by patience 1, and the same recipe started with patience 3."""
    root = tmp_path_factory.mktemp("extend")
    recipe = root / "r.toml"
    recipe.write_text(RECIPE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ECLSR_CACHE_DIR", str(root / "cache"))
        for args in (
            ["run", str(recipe), "--out", str(root / "p1"), "--no-progress"],
            ["run", str(recipe), "--set", "train.patience=3", "--out", str(root / "p3")],
        ):
            mp.setattr(sys, "argv", ["eclsr", *args])  # the command a run records
            assert main(args) == 0
    stopped_at = json.loads((root / "p1" / "results.json").read_text())["epochs_run"]
    assert stopped_at < 10, "the fixture must stop early by patience"
    return root


def test_extended_run_equals_a_run_started_with_the_raised_patience(stopped, tmp_path, monkeypatch):
    monkeypatch.setenv("ECLSR_CACHE_DIR", str(stopped / "cache"))
    source = stopped / "p1"
    before = _digests(source)
    extended = tmp_path / "extended"
    args = ["resume", str(source), "--set", "train.patience=3", "--out", str(extended)]
    monkeypatch.setattr(sys, "argv", ["eclsr", *args])
    assert main(args) == 0

    assert _digests(source) == before  # the stopped run keeps every file as it was
    fresh = stopped / "p3"
    got = json.loads((extended / "results.json").read_text())
    want = json.loads((fresh / "results.json").read_text())
    assert got["epochs_run"] > json.loads((source / "results.json").read_text())["epochs_run"]
    for key in ("test", "valid", "best_epoch", "epochs_run", "protocol"):
        assert got[key] == want[key], key
    assert _epochs_without_timings(extended) == _epochs_without_timings(fresh)
    got_best = torch.load(extended / "best.pt", weights_only=True)["model"]
    want_best = torch.load(fresh / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(got_best[name], want_best[name]) for name in want_best)
    # Provenance: the command that started the training, then the extension.
    assert got["command"] == f"eclsr run {stopped / 'r.toml'} --out {source} --no-progress"
    assert got["resumed_with"] == [f"eclsr {' '.join(args)}"]
    assert "patience: 3" in (extended / "recipe.yaml").read_text()


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--set", "train.patience=3"], "add --out NEW_DIR"),
        (["--set", "train.lr=0.01", "--out", "{tmp}/new"], "may only raise when it stops"),
        (["--set", "heads[1].weight=0.5", "--out", "{tmp}/new"], "heads[1].weight"),
        (["--set", "train.epochs=5", "--out", "{tmp}/new"], "lower than the run's 10"),
        (["--set", "train.patience=0", "--out", "{tmp}/new"], "train.patience"),
        (["--set", "train.patience=3", "--out", "{source}"], "already holds a run's results"),
    ],
)
def test_extension_that_would_change_the_experiment_is_refused(
    stopped, tmp_path, capsys, extra, fragment
):
    source = stopped / "p1"
    before = _digests(source)
    filled = [arg.format(tmp=tmp_path, source=source) for arg in extra]
    assert main(["resume", str(source), *filled, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert fragment in err
    assert "Traceback" not in err
    assert _digests(source) == before
    assert not (tmp_path / "new").exists()


def test_two_stage_run_past_its_first_stage_cannot_be_extended(tmp_path):
    recipe = validate_recipe(
        {
            "encoder": {"name": "sasrec"},
            "heads": [{"name": "next_item"}],
            "train": {"patience": 3, "schedule": {"name": "two_stage", "drop": []}},
        }
    )
    check_extensible(tmp_path, recipe, stage=1)  # still in stage 1: the same run continues
    with pytest.raises(EclsrError, match="stage 2 of its two-stage schedule"):
        check_extensible(tmp_path, recipe, stage=2)


def test_raising_both_stopping_values_is_allowed(tmp_path):
    recipe = validate_recipe({"encoder": {"name": "sasrec"}, "heads": [{"name": "next_item"}]})
    raised = extended_recipe(tmp_path, recipe, ["train.patience=20", "train.epochs=400"])
    assert (raised.train.patience, raised.train.epochs) == (20, 400)
    expected = recipe.model_dump()
    expected["train"] |= {"patience": 20, "epochs": 400}
    assert raised.model_dump() == expected  # nothing else changed
