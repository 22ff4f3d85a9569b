from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import eclsr
from eclsr.data.synthetic import generate
from eclsr.engine.rundir import code_version
from eclsr.engine.train import run
from eclsr.recipe.load import validate_recipe


def ecl_sr(epochs: int = 3, schedule: dict | None = None, **train) -> dict:
    return {
        "seed": 7,
        "name": "tiny",
        "data": {"dataset": "synthetic", "max_len": 20},
        "encoder": {
            "name": "sasrec",
            "hidden": 32,
            "layers": 1,
            "heads": 1,
            "dropout": 0.1,
            "attn_dropout": 0.1,
        },
        "heads": [
            {"name": "next_item"},
            {"name": "infonce", "weight": 0.1, "pooling_k": 3},
            {
                "name": "generator",
                "weight": 0.2,
                "encoder": {"name": "bert4rec", "layers": 1, "heads": 1},
            },
            {"name": "rid", "weight": 0.1},
        ],
        "train": {
            "epochs": epochs,
            "batch_size": 64,
            "lr": 0.005,
            "patience": 5,
            "monitor": "valid.ndcg@10",
            "schedule": schedule or {"name": "joint"},
            **train,
        },
    }


@pytest.fixture(scope="module")
def tiny_data():
    return generate(num_users=400, num_items=120, seed=3)


def test_same_seed_same_metrics(tiny_data):
    recipe = validate_recipe(ecl_sr(epochs=2))
    first = run(recipe, dataset=tiny_data, progress=False).results
    second = run(recipe, dataset=tiny_data, progress=False).results
    assert first["test"] == second["test"] and first["valid"] == second["valid"]


def test_end_to_end_beats_popularity_and_writes_run_dir(tiny_data, tmp_path):
    out = tmp_path / "run"
    result = run(validate_recipe(ecl_sr(epochs=6)), out, dataset=tiny_data, progress=False).results
    assert result["test"]["ndcg@10"] > 1.5 * result["popularity_test"]["ndcg@10"], result
    for name in (
        "recipe.yaml",
        "plugins.json",
        "metrics.jsonl",
        "results.json",
        "best.pt",
        "ranks.npz",
    ):
        assert (out / name).is_file(), name
    saved = json.loads((out / "results.json").read_text())
    assert {"recall@10", "ndcg@10", "recall@20", "ndcg@20"} <= saved["test"].keys()
    assert (
        saved["protocol"]["exclude_seen"] is False
        and "strictly higher" in saved["protocol"]["ties"]
    )
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == result["epochs_run"]
    assert {"next_item", "infonce", "generator", "rid"} <= lines[0]["losses"].keys()
    assert "ndcg@10" in lines[0]["valid"] and lines[0]["train_seconds"] > 0
    assert saved["code"]["eclsr"] == eclsr.__version__ and saved["code"]["torch"]
    assert saved["machine"]["cores"] >= 1 and saved["machine"]["cpu"]


def _git(root, *args):
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def test_code_version_names_the_commit_and_whether_files_changed(tmp_path):
    assert "git_commit" not in code_version(tmp_path)  # not a checkout: the version only
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    _git(tmp_path, "add", "a.py")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "a")
    head = _git(tmp_path, "rev-parse", "HEAD").stdout.decode().strip()
    assert code_version(tmp_path) | {"torch": "-"} == {
        "eclsr": eclsr.__version__,
        "torch": "-",
        "git_commit": head,
        "git_dirty": False,
    }
    (tmp_path / "untracked.txt").write_text("notes")  # not code the run used
    assert code_version(tmp_path)["git_dirty"] is False
    (tmp_path / "a.py").write_text("x = 2\n")
    assert code_version(tmp_path)["git_dirty"] is True


def test_code_version_of_this_process_is_read_once(monkeypatch):
    # a long-lived worker keeps the version of the code it imported, whatever git says later
    from eclsr.engine import rundir

    calls = []
    monkeypatch.setattr(rundir, "_git", lambda root, *args: calls.append(args) or "f" * 40)
    rundir._this_process_code.cache_clear()
    try:
        first = code_version()
        first["git_commit"] = "edited by the caller"  # each caller gets its own copy
        monkeypatch.setattr(rundir, "_git", lambda root, *args: "0" * 40)
        assert code_version()["git_commit"] == "f" * 40
        assert len(calls) == 2  # rev-parse and status, once
        assert code_version(Path("any-checkout"))["git_commit"] == "0" * 40  # a root: read now
    finally:
        rundir._this_process_code.cache_clear()


def test_two_stage_drops_generator_and_rid(tiny_data):
    recipe = validate_recipe(ecl_sr(epochs=2, schedule={"name": "two_stage"}, patience=1))
    history = run(recipe, dataset=tiny_data, progress=False).history
    stage2 = [h for h in history if h["stage"] == 2]
    assert stage2, "the second stage never ran"
    assert all(set(h["losses"]) == {"next_item", "infonce"} for h in stage2)
    assert {"generator", "rid"} <= set(history[0]["losses"])


def test_freeze_after_stops_generator_loss(tiny_data):
    recipe = validate_recipe(ecl_sr(epochs=2, schedule={"name": "freeze_after", "epochs": 1}))
    history = run(recipe, dataset=tiny_data, progress=False).history
    assert "generator" in history[0]["losses"] and "generator" not in history[1]["losses"]
    assert "rid" in history[1]["losses"]  # RID keeps training on the frozen generator's output


def test_pop_recipe_equals_popularity_baseline(tiny_data):
    recipe = validate_recipe(
        {
            "encoder": {"name": "pop"},
            "heads": [{"name": "next_item", "weight": 0.0}],
            "train": {"epochs": 0},
        }
    )
    result = run(recipe, dataset=tiny_data, progress=False).results
    assert result["test"] == result["popularity_test"]


def test_run_accepts_a_str_out_dir(tmp_path):
    from eclsr import run, validate_recipe

    recipe = validate_recipe(
        {
            "data": {
                "dataset": "synthetic",
                "max_len": 8,
                "synthetic_users": 30,
                "synthetic_items": 20,
            },
            "encoder": {"name": "sasrec", "hidden": 16, "layers": 1, "heads": 1},
            "heads": [{"name": "next_item"}],
            "train": {"epochs": 1, "device": "cpu"},
        }
    )
    result = run(recipe, str(tmp_path / "run"), progress=False)
    assert (tmp_path / "run" / "results.json").is_file() and result.run_dir == tmp_path / "run"


def test_on_epoch_sees_every_epoch_and_may_stop_the_run():
    data = generate(num_users=40, num_items=30, seed=3)
    recipe = validate_recipe(
        {
            "seed": 1,
            "data": {"dataset": "synthetic", "max_len": 10},
            "encoder": {"name": "sasrec", "hidden": 16, "layers": 1, "heads": 1},
            "heads": [{"name": "next_item"}],
            "train": {"epochs": 2, "batch_size": 16, "monitor": "valid.ndcg@10"},
        }
    )
    seen = []
    plain = run(recipe, dataset=data, progress=False)
    hooked = run(recipe, dataset=data, progress=False, on_epoch=lambda e, r: seen.append((e, r)))
    assert [e for e, _ in seen] == [0, 1] and "ndcg@10" in seen[0][1]["valid"]
    assert hooked.results["test"] == plain.results["test"]  # the hook changes no numbers

    class Stop(Exception):
        pass

    def stop(epoch, record):
        raise Stop

    with pytest.raises(Stop):
        run(recipe, dataset=data, progress=False, on_epoch=stop)
