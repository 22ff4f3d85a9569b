from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
import torch
import yaml

from eclsr.cli.main import main
from eclsr.engine.train import run
from eclsr.errors import EclsrError
from eclsr.recipe.load import validate_recipe
from eclsr.results.inference import Recommender, evaluate_run, export_items, top_k


def tiny_recipe(seed: int = 3, **data) -> dict:
    return {
        "seed": seed,
        "name": "tiny-infer",
        "data": {
            "dataset": "synthetic",
            "max_len": 8,
            "synthetic_users": 150,
            "synthetic_items": 40,
            **data,
        },
        "encoder": {"name": "sasrec", "hidden": 16, "layers": 1, "heads": 1, "inner_size": 32},
        "heads": [{"name": "next_item"}, {"name": "infonce", "weight": 0.1, "pooling_k": 2}],
        "train": {
            "epochs": 1,
            "batch_size": 64,
            "lr": 0.01,
            "monitor": "valid.ndcg@10",
            "device": "cpu",
        },
    }


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("infer") / "run"
    run(validate_recipe(tiny_recipe()), out, progress=False)
    return out


@pytest.fixture(scope="module")
def rec(run_dir):
    return Recommender.from_run(run_dir)


def copy_run(run_dir, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(run_dir, target)
    return target


def test_recommend_matches_full_ranking(rec):
    histories = [["3", "7", "12"], ["40"], [str(i) for i in range(1, 30)]]
    got = rec.recommend(histories, k=5)
    for history, row in zip(histories, got, strict=True):
        assert len(row) == 5
        scores = rec.scores(rec.encode([history]))[0]  # [N+1]
        assert scores.shape == (rec.data.num_items + 1,)
        expected = torch.argsort(scores[1:], descending=True, stable=True)[:5] + 1
        assert [item for item, _ in row] == [rec.item_ids[i - 1] for i in expected.tolist()]
        values = [score for _, score in row]
        assert values == sorted(values, reverse=True)
        torch.testing.assert_close(torch.tensor(values), scores[expected], rtol=1e-5, atol=1e-5)


def test_recommend_never_returns_padding_or_mask_and_k_beyond_catalogue(rec):
    row = rec.recommend([["1"]], k=1000)[0]
    ids = [item for item, _ in row]
    assert len(ids) == rec.data.num_items == 40 and len(set(ids)) == 40
    assert set(ids) == set(rec.item_ids) and "" not in ids


def test_only_last_max_len_items_count(rec):
    long = [str(i) for i in range(1, 21)]
    assert rec.recommend([long], k=10) == rec.recommend([long[-rec.max_len :]], k=10)


def test_exclude_seen_removes_whole_history(rec):
    history = [str(i) for i in range(1, 21)]  # longer than max_len = 8
    row = rec.recommend([history], k=100, exclude_seen=True)[0]
    assert not {item for item, _ in row} & set(history)
    assert len(row) == 20


def test_unknown_ids_error_or_skip(rec):
    with pytest.raises(EclsrError, match="'nope'"):
        rec.recommend([["3", "nope"]], k=3)
    with pytest.warns(UserWarning, match="nope"):
        skipped = rec.recommend([["3", "nope"]], k=3, unknown="skip")
    assert skipped == rec.recommend([["3"]], k=3)
    with pytest.raises(EclsrError, match="no known item"), pytest.warns(UserWarning):
        rec.recommend([["nope"]], k=3, unknown="skip")
    with pytest.raises(EclsrError, match="k must be"):
        rec.recommend([["3"]], k=0)


def test_int_raw_ids_are_read_as_text(rec):
    assert rec.recommend([[3, 7]], k=4) == rec.recommend([["3", "7"]], k=4)


def test_top_k_breaks_ties_by_id_and_drops_excluded():
    scores = torch.tensor([[-torch.inf, 1.0, 2.0, 2.0, -torch.inf, 0.5]])
    assert top_k(scores, 10) == [[(2, 2.0), (3, 2.0), (1, 1.0), (5, 0.5)]]


def test_cli_recommend_json_equals_api(rec, run_dir, capsys):
    assert main(["recommend", str(run_dir), "--history", "3 7 12", "-k", "6", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    api = rec.recommend([["3", "7", "12"]], k=6)
    assert [[r["item"] for r in row] for row in cli] == [[i for i, _ in row] for row in api]


def test_cli_recommend_batch_input_and_table(rec, run_dir, tmp_path, capsys):
    lines = ["3 7 12", "", "# a comment", "40 1", "5"]
    file = tmp_path / "histories.txt"
    file.write_text("\n".join(lines) + "\n")
    assert (
        main(
            ["recommend", str(run_dir), "--input", str(file), "-k", "4", "--exclude-seen", "--json"]
        )
        == 0
    )
    cli = json.loads(capsys.readouterr().out)
    api = rec.recommend([["3", "7", "12"], ["40", "1"], ["5"]], k=4, exclude_seen=True)
    assert [[r["item"] for r in row] for row in cli] == [[i for i, _ in row] for row in api]
    assert main(["recommend", str(run_dir), "--history", "3 7", "-k", "3"]) == 0
    table = capsys.readouterr().out
    assert all(item in table for item, _ in rec.recommend([["3", "7"]], k=3)[0])


def test_cli_recommend_user_errors_exit_2(run_dir, tmp_path, capsys):
    assert main(["recommend", str(run_dir), "--history", "3 zzz"]) == 2
    assert "'zzz'" in capsys.readouterr().err
    assert main(["recommend", str(run_dir), "--history", "3 zzz", "--skip-unknown", "--json"]) == 0
    assert "skipped unknown item 'zzz'" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert main(["recommend", str(run_dir), "--input", str(empty)]) == 2
    assert main(["recommend", str(tmp_path / "missing"), "--history", "1"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err


def test_evaluate_reproduces_results_exactly(run_dir, capsys):
    saved = json.loads((run_dir / "results.json").read_text())
    result = evaluate_run(run_dir)
    assert result.metrics == saved["test"] and result.matches
    np.testing.assert_array_equal(result.ranks, np.load(run_dir / "ranks.npz")["test"])
    valid = evaluate_run(run_dir, "valid")
    np.testing.assert_array_equal(valid.ranks, np.load(run_dir / "ranks.npz")["valid"])
    assert main(["evaluate", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert out.count("exact") == len(saved["test"]) and "identical to ranks.npz: yes" in out


def test_evaluate_reports_a_mismatch_with_exit_1(run_dir, tmp_path, capsys):
    copy = copy_run(run_dir, tmp_path)
    results = json.loads((copy / "results.json").read_text())
    results["test"]["ndcg@10"] += 0.01
    (copy / "results.json").write_text(json.dumps(results))
    assert main(["evaluate", str(copy)]) == 1
    assert "differ" in capsys.readouterr().out


def test_evaluate_refuses_changed_data(run_dir, tmp_path):
    copy = copy_run(run_dir, tmp_path)
    results = json.loads((copy / "results.json").read_text())
    results["protocol"]["dataset_sha256"] = "0" * 64
    (copy / "results.json").write_text(json.dumps(results))
    with pytest.raises(EclsrError, match="changed since it was trained"):
        evaluate_run(copy)


def test_export_npz_and_npy(rec, run_dir, tmp_path, capsys):
    out = tmp_path / "items.npz"
    assert main(["export", str(run_dir), "--out", str(out)]) == 0
    with np.load(out, allow_pickle=False) as saved:
        assert saved["ids"].tolist() == rec.item_ids
        weight = rec.model.item_embedding.weight.detach()
        np.testing.assert_array_equal(saved["vectors"], weight[1:41].numpy())
    assert main(["export", str(run_dir), "--out", str(out)]) == 2  # refuses to overwrite
    assert "--overwrite" in capsys.readouterr().err
    npy = tmp_path / "vec.npy"
    export_items(rec, npy)
    assert np.load(npy).shape == (40, 16)
    assert (tmp_path / "vec.ids.txt").read_text().split() == rec.item_ids
    with pytest.raises(EclsrError, match=".npz"):
        export_items(rec, tmp_path / "vec.csv")


def test_checkpoint_from_another_recipe_is_a_clear_error(run_dir, tmp_path, capsys):
    copy = copy_run(run_dir, tmp_path)
    recipe = yaml.safe_load((copy / "recipe.yaml").read_text())
    recipe["encoder"]["hidden"] = 24
    (copy / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    with pytest.raises(EclsrError, match="does not fit") as info:
        Recommender.from_run(copy)
    assert str(copy) in str(info.value)
    assert main(["evaluate", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "another recipe" in err and "Traceback" not in err


def test_missing_plugin_is_named(run_dir, tmp_path):
    copy = copy_run(run_dir, tmp_path)
    recipe = yaml.safe_load((copy / "recipe.yaml").read_text())
    recipe["heads"].append({"name": "mystery_head", "weight": 0.1})
    (copy / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    rows = json.loads((copy / "plugins.json").read_text())
    rows.append(
        {
            "kind": "head",
            "name": "mystery_head",
            "intensity": None,
            "plugin": "eclsr_mystery",
            "distribution": "eclsr-mystery",
            "version": "9.9",
            "description": "",
        }
    )
    (copy / "plugins.json").write_text(json.dumps(rows))
    with pytest.raises(EclsrError, match="not installed now: 'mystery_head'.*eclsr-mystery 9.9"):
        Recommender.from_run(copy)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_code_carrying_checkpoint_is_refused_and_not_run(run_dir, tmp_path):
    copy = copy_run(run_dir, tmp_path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"model": Evil(), "epoch": 0}, copy / "best.pt")
    (copy / "legacy.pt").write_bytes(pickle.dumps({"model": Evil()}))
    with pytest.raises(EclsrError, match="cannot be loaded safely"):
        Recommender.from_run(copy)
    (copy / "legacy.pt").replace(copy / "best.pt")
    with pytest.raises(EclsrError, match="cannot be loaded safely"):
        Recommender.from_run(copy)
    assert not marker.exists()


def test_compiled_checkpoint_keys_load(run_dir, tmp_path, rec):
    copy = copy_run(run_dir, tmp_path)
    state = torch.load(copy / "best.pt", weights_only=True)
    state["model"] = {
        k.replace("encoder.", "encoder._orig_mod.", 1): v for k, v in state["model"].items()
    }
    torch.save(state, copy / "best.pt")
    assert Recommender.from_run(copy).recommend([["3", "4"]], k=5) == rec.recommend(
        [["3", "4"]], k=5
    )


def test_not_a_run_dir(tmp_path):
    with pytest.raises(EclsrError, match="does not exist"):
        Recommender.from_run(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EclsrError, match="no recipe.yaml"):
        Recommender.from_run(tmp_path / "empty")


@pytest.mark.parametrize(
    "encoder", [{"name": "pop"}, {"name": "sasrec", "hidden": 16, "layers": 1, "heads": 1}]
)
def test_untrained_runs_save_their_weights_and_evaluate(tmp_path, encoder):
    recipe = tiny_recipe()
    recipe |= {"encoder": encoder, "heads": [{"name": "next_item", "weight": 0.0}]}
    recipe["train"]["epochs"] = 0
    out = tmp_path / "run"
    run(validate_recipe(recipe), out, progress=False)
    assert torch.load(out / "best.pt", weights_only=True)["epoch"] == -1
    assert evaluate_run(out).matches
    row = Recommender.from_run(out).recommend([["1", "2"]], k=3)[0]
    assert len(row) == 3


def test_evaluate_under_the_other_seen_item_rule_scores_without_comparing(run_dir, capsys):
    kept = evaluate_run(run_dir)
    excluded = evaluate_run(run_dir, exclude_seen=True)
    assert excluded.saved == {} and excluded.saved_ranks is None
    # Removing seen items from the ranking can only move a target up, and on this data
    # (users repeat items rarely) it moves some.
    assert (excluded.ranks <= kept.ranks).all() and (excluded.ranks < kept.ranks).any()
    assert main(["evaluate", str(run_dir), "--exclude-seen", "yes"]) == 0
    out = capsys.readouterr().out
    assert "seen items excluded" in out and "nothing to compare with" in out
    same = evaluate_run(run_dir, exclude_seen=False)  # the recorded rule: compared as before
    assert same.matches and same.saved


def test_rescored_run_is_a_run_folder_that_compare_and_collect_accept(run_dir, tmp_path, capsys):
    out = tmp_path / "excluded"
    assert main(["evaluate", str(run_dir), "--exclude-seen", "yes", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    original = json.loads((run_dir / "results.json").read_text())
    assert results["protocol"]["exclude_seen"] is True
    assert original["protocol"]["exclude_seen"] is False
    assert results["rescored_from"] == str(run_dir.resolve())
    assert results["command"].startswith(f"eclsr evaluate {run_dir} --exclude-seen yes --out")
    assert "trained_with" not in results  # trained from Python: no command to name
    assert results["test"] == evaluate_run(run_dir, exclude_seen=True).metrics
    assert results["test"]["recall@10"] >= original["test"]["recall@10"]
    assert yaml.safe_load((out / "recipe.yaml").read_text())["eval"]["exclude_seen"] is True
    assert not list(out.glob("*.pt"))  # small files only
    capsys.readouterr()
    assert main(["compare", str(run_dir), str(out)]) == 2  # the protocols differ: said, not hidden
    assert "exclude_seen: False → True" in capsys.readouterr().err
    assert main(["compare", str(run_dir), str(out), "--json", "--allow-protocol-mismatch"]) == 0
    captured = capsys.readouterr()
    assert "note: protocols differ" in captured.err and "exclude_seen" in captured.err
    tests = json.loads(captured.out)
    assert {t["metric"] for t in tests} >= {"recall@10", "ndcg@10"}
    assert all(t["diff"] >= 0 for t in tests)
    book = tmp_path / "book"
    assert main(["results", "collect", str(out), "--into", str(book)]) == 0
    assert (book / "synthetic" / "tiny-infer" / "seed-3" / "ranks.npz").is_file()


def test_rescoring_refuses_an_existing_folder_and_a_missing_rule(run_dir, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    assert main(["evaluate", str(run_dir), "--exclude-seen", "yes", "--out", str(taken)]) == 2
    assert main(["evaluate", str(run_dir), "--out", str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--exclude-seen yes" in err and "Traceback" not in err
    assert (taken / "keep.txt").read_text() == "mine" and not (tmp_path / "new").exists()


def test_a_rescored_run_names_the_command_that_trained_it(run_dir, tmp_path):
    from eclsr.results.headline import render

    trained = copy_run(run_dir, tmp_path)
    results = json.loads((trained / "results.json").read_text())
    results["command"] = "eclsr run recipes/tiny.toml --set seed=3"
    (trained / "results.json").write_text(json.dumps(results))
    out = tmp_path / "excluded"
    assert main(["evaluate", str(trained), "--exclude-seen", "yes", "--out", str(out)]) == 0
    rescored = json.loads((out / "results.json").read_text())
    assert rescored["trained_with"] == "eclsr run recipes/tiny.toml --set seed=3"
    book = tmp_path / "book"
    assert main(["results", "collect", str(out), "--into", str(book)]) == 0
    line = next(line for line in render(book).splitlines() if line.startswith("- tiny-infer"))
    assert f"`eclsr evaluate {trained} --exclude-seen yes --out {out}`" in line
    assert "re-scoring the run of `eclsr run recipes/tiny.toml --set seed=3`" in line
