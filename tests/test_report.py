from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from eclsr.cli.main import main
from eclsr.engine.evaluate import metrics_from_ranks
from eclsr.engine.train import run
from eclsr.errors import EclsrError
from eclsr.recipe.load import validate_recipe
from eclsr.results import stats as stats_tests
from eclsr.results.power import welch_power
from eclsr.results.report import (
    compare_runs,
    find_recipe_file,
    load_run,
    protocol_differences,
    require_pyplot,
    results_table,
    run_command,
)
from eclsr.results.stats import (
    betainc,
    paired_tests,
    per_user_metric,
    ttest_rel,
    welch_ttest,
    wilcoxon_normal,
)


@pytest.fixture(scope="module")
def scipy_stats():
    return pytest.importorskip("scipy.stats")


def tiny_recipe(seed: int = 3, name: str = "tiny-report", epochs: int = 2, **data) -> dict:
    return {
        "seed": seed,
        "name": name,
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
            "epochs": epochs,
            "batch_size": 64,
            "lr": 0.01,
            "monitor": "valid.ndcg@10",
            "device": "cpu",
        },
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    recipes = {
        "a": tiny_recipe(seed=1),
        "b": tiny_recipe(seed=2),
        "other": tiny_recipe(seed=1, name="tiny-other", epochs=1),
        "longer": tiny_recipe(seed=1, epochs=1, max_len=12),
    }
    for key, recipe in recipes.items():
        run(validate_recipe(recipe), root / key, progress=False)
    return {key: root / key for key in recipes}


# --------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("n", [5, 60, 3000])
def test_fallback_tests_match_scipy(n, scipy_stats):
    rng = np.random.default_rng(n)
    a = np.round(rng.random(n), 1)
    b = np.round(np.clip(a + rng.normal(0.03, 0.2, n), 0, 1), 1)  # many ties and zero differences
    t, p = ttest_rel(a, b)
    expected = scipy_stats.ttest_rel(b, a)
    assert t == pytest.approx(expected.statistic, rel=1e-10)
    assert p == pytest.approx(expected.pvalue, rel=1e-8)
    w, pw = wilcoxon_normal(a, b)
    expected_w = scipy_stats.wilcoxon(b, a, method="asymptotic")
    assert w == expected_w.statistic
    assert pw == pytest.approx(expected_w.pvalue, rel=1e-10)


def test_betainc_matches_scipy():
    special = pytest.importorskip("scipy.special")
    for a, b, x in [
        (0.5, 0.5, 0.3),
        (2.5, 0.5, 0.01),
        (1000.0, 0.5, 0.999),
        (17500.0, 0.5, 0.9999),
        (3, 4, 0.7),
    ]:
        assert betainc(a, b, x) == pytest.approx(special.betainc(a, b, x), rel=1e-9)


def test_paired_tests_without_scipy_uses_fallback(monkeypatch, scipy_stats):
    rng = np.random.default_rng(0)
    a = (rng.random(500) < 0.3).astype(float)
    b = (rng.random(500) < 0.4).astype(float)
    with_scipy = paired_tests(a, b, "recall@10")
    monkeypatch.setattr(stats_tests, "have_scipy", lambda: False)
    fallback = paired_tests(a, b, "recall@10")
    assert with_scipy.exact_scipy and not fallback.exact_scipy
    assert fallback.t == pytest.approx(with_scipy.t, rel=1e-10)
    assert fallback.p_t == pytest.approx(with_scipy.p_t, rel=1e-8)
    assert fallback.p_w == pytest.approx(
        with_scipy.p_w, rel=1e-8
    )  # n > 50: scipy is asymptotic too
    assert fallback.diff == pytest.approx(b.mean() - a.mean())


def test_identical_samples_are_not_significant():
    x = np.array([0.0, 1.0, 0.5, 0.5])
    result = paired_tests(x, x.copy())
    assert (result.t, result.p_t, result.p_w) == (0.0, 1.0, 1.0)
    with pytest.raises(EclsrError, match="same length"):
        paired_tests(x, x[:3])


def test_per_user_metrics_average_to_the_recorded_metrics():
    ranks = np.array([1, 2, 3, 10, 11, 25, 400])
    recorded = metrics_from_ranks(ranks, [5, 10, 20])
    for metric, value in recorded.items():
        assert per_user_metric(ranks, metric).mean() == value
    np.testing.assert_array_equal(
        per_user_metric(ranks, "hit@10"), per_user_metric(ranks, "recall@10")
    )
    with pytest.raises(EclsrError, match="ndcg@K"):
        per_user_metric(ranks, "auc")


# --------------------------------------------------------------------------- protocols and tables


def test_protocol_differences_name_dotted_keys():
    a = {"max_len": 8, "preprocessing": {"k_core": 5}, "ks": [5, 10]}
    b = {"max_len": 12, "preprocessing": {"k_core": 5, "extra": 1}, "ks": [5, 10]}
    assert protocol_differences(a, b) == ["max_len: 8 → 12", "preprocessing.extra: '<missing>' → 1"]
    assert protocol_differences(a, a) == []


def test_report_table(runs, capsys):
    assert main(["report", str(runs["a"]), str(runs["b"]), str(runs["other"])]) == 0
    out = capsys.readouterr().out
    saved = json.loads((runs["b"] / "results.json").read_text())
    for fragment in (
        "tiny-report",
        "tiny-other",
        "recall@10",
        "ndcg@20",
        "best epoch",
        f"{saved['test']['ndcg@10']:.4f}",
        str(runs["other"]),
    ):
        assert fragment in out, fragment
    assert main(["report", str(runs["a"]), "--metric", "mrr@5"]) == 0
    assert "mrr@5" in capsys.readouterr().out
    assert main(["report", str(runs["a"]), "--metric", "auc@3"]) == 2


def test_report_refuses_protocol_mismatch_unless_allowed(runs, capsys):
    assert main(["report", str(runs["a"]), str(runs["longer"])]) == 2
    err = capsys.readouterr().err
    assert (
        "max_len: 8 → 12" in err and "--allow-protocol-mismatch" in err and "Traceback" not in err
    )
    assert main(["report", str(runs["a"]), str(runs["longer"]), "--allow-protocol-mismatch"]) == 0
    assert "protocol differs" in capsys.readouterr().out


def test_report_of_unfinished_run(runs, tmp_path, capsys):
    partial = tmp_path / "partial"
    shutil.copytree(runs["a"], partial)
    (partial / "results.json").unlink()
    assert main(["report", str(partial)]) == 2
    assert "did not finish" in capsys.readouterr().err


def test_plots_need_matplotlib(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(EclsrError, match=r"pip install eclsr\[plot\]"):
        require_pyplot()
    assert main(["report", str(runs["a"]), "--plots", str(tmp_path / "plots")]) == 2
    assert "eclsr[plot]" in capsys.readouterr().err
    assert not (tmp_path / "plots").exists()


def test_plots_write_pngs(runs, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    plots = tmp_path / "plots"
    assert main(["report", str(runs["a"]), str(runs["b"]), "--plots", str(plots)]) == 0
    files = sorted(p.name for p in plots.iterdir())
    assert files == [
        "comparison.png",
        "curves_0_tiny-report_seed1.png",
        "curves_1_tiny-report_seed2.png",
    ]
    for name in files:
        data = (plots / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


# --------------------------------------------------------------------------- compare


def test_compare_runs_pairs_users(runs, scipy_stats):
    a, b = load_run(runs["a"]), load_run(runs["b"])
    tests = compare_runs(a, b, ["ndcg@10", "recall@20"])
    assert [t.metric for t in tests] == ["ndcg@10", "recall@20"]
    assert tests[0].mean_a == a.results["test"]["ndcg@10"]
    assert tests[1].mean_b == b.results["test"]["recall@20"]
    ranks_a, ranks_b = (
        np.load(runs["a"] / "ranks.npz")["test"],
        np.load(runs["b"] / "ranks.npz")["test"],
    )
    expected = scipy_stats.ttest_rel(
        per_user_metric(ranks_b, "ndcg@10"), per_user_metric(ranks_a, "ndcg@10")
    )
    assert tests[0].t == pytest.approx(expected.statistic) and tests[0].p_t == pytest.approx(
        expected.pvalue
    )
    with pytest.raises(EclsrError, match="max_len"):
        compare_runs(a, load_run(runs["longer"]), ["ndcg@10"])


def test_compare_cli(runs, capsys):
    assert main(["compare", str(runs["a"]), str(runs["b"]), "--metric", "ndcg@10", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert (
        rows[0]["metric"] == "ndcg@10"
        and {"t", "p_t", "p_w", "diff", "significant"} <= rows[0].keys()
    )
    assert main(["compare", str(runs["a"]), str(runs["b"])]) == 0
    out = capsys.readouterr().out
    for fragment in (
        "mean A",
        "mean B",
        "p (t-test)",
        "p (Wilcoxon)",
        "recall@10",
        "ndcg@20",
        "p < 0.01",
    ):
        assert fragment in out, fragment
    # single runs: the reader is told that per-user tests do not cover seed noise
    assert "One run a side" in out and "not over training seeds" in " ".join(out.split())
    assert main(["compare", str(runs["a"]), str(runs["a"]), "--alpha", "1.5"]) == 2
    assert main(["compare", str(runs["a"]), str(runs["longer"])]) == 2


def test_compare_marks_significance(runs, tmp_path, capsys):
    better = tmp_path / "better"
    shutil.copytree(runs["a"], better)
    saved = np.load(runs["a"] / "ranks.npz")
    np.savez(
        better / "ranks.npz",
        users=saved["users"],
        test=np.ones_like(saved["test"]),
        valid=saved["valid"],
    )
    assert main(["compare", str(runs["a"]), str(better), "--metric", "recall@10", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["mean_b"] == 1.0 and row["p_t"] < 0.01 and row["significant"]
    assert main(["compare", str(runs["a"]), str(better), "--metric", "recall@10"]) == 0
    assert "*" in capsys.readouterr().out.split("p (Wilcoxon)")[1]


# --------------------------------------------------------------------------- markdown


def test_results_table_groups_seeds(runs):
    paper = {"tiny-report": {"ndcg@10": 0.0272}}
    text = results_table([runs["a"], runs["b"], runs["other"]], paper=paper)
    lines = text.strip().splitlines()
    assert lines[0].startswith("| recipe | dataset | seeds | recall@10")
    assert len(lines) == 4
    row = next(line for line in lines if line.startswith("| tiny-report "))
    values = [
        json.loads((runs[k] / "results.json").read_text())["test"]["ndcg@10"] for k in ("a", "b")
    ]
    assert f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f} (paper 0.0272)" in row
    assert "| synthetic | 2 |" in row and "seeds 1, 2" in row and "eclsr run" in row
    other = next(line for line in lines if line.startswith("| tiny-other "))
    assert "±" not in other.split("|")[4]


def test_run_command_recorded_or_found(tmp_path):
    assert run_command({"command": "eclsr run x.toml", "recipe": "x"}) == "eclsr run x.toml"
    recipes = tmp_path / "recipes"
    (recipes / "ecl-sr").mkdir(parents=True)
    (recipes / "ecl-sr" / "toys.toml").write_text("seed = 1\n")
    (recipes / "quick.toml").write_text("seed = 1\n")
    (recipes / "named.toml").write_text('name = "custom"\n')
    assert find_recipe_file("ecl-sr-toys", recipes) == recipes / "ecl-sr" / "toys.toml"
    assert find_recipe_file("quick", recipes) == recipes / "quick.toml"
    assert find_recipe_file("custom", recipes) == recipes / "named.toml"
    command = run_command({"recipe": "ecl-sr-toys", "seed": 2}, recipes)
    assert command == f"eclsr run {(recipes / 'ecl-sr' / 'toys.toml').as_posix()} --set seed=2"
    # A recipe no file holds (a tuned trial's): its run directory's own recipe.yaml, which runs.
    run_dir = tmp_path / "trial-0003"
    run_dir.mkdir()
    tuned = {"recipe": "toys-trial-0003", "seed": 2}
    guessed = f"eclsr run {recipes.as_posix()}/toys-trial-0003.toml --set seed=2"
    assert run_command(tuned, recipes, run_dir) == guessed  # no recipe.yaml: the name is all
    (run_dir / "recipe.yaml").write_text("seed: 2\n")
    assert (
        run_command(tuned, recipes, run_dir) == f"eclsr run {(run_dir / 'recipe.yaml').as_posix()}"
    )
    assert run_command({"recipe": "quick", "seed": 2}, recipes, run_dir).endswith(
        "quick.toml --set seed=2"
    )


def test_results_table_reads_bare_results_files(runs, tmp_path):
    kept = tmp_path / "results"
    kept.mkdir()
    for key in ("a", "b"):
        shutil.copy(runs[key] / "results.json", kept / f"tiny-report-seed{key}.json")
    from_files = results_table(sorted(kept.iterdir()))
    assert from_files == results_table([runs["a"], runs["b"]])
    (kept / "broken.json").write_text("{")
    with pytest.raises(EclsrError, match="not valid JSON"):
        results_table([kept / "broken.json"])


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([0.040, 0.041, 0.039], [0.045, 0.046, 0.044]),
        ([0.0771, 0.0790], [0.0803, 0.0812, 0.0798]),
        ([0.05, 0.06, 0.07, 0.02], [0.051, 0.049]),
    ],
)
def test_welch_ttest_matches_scipy(a, b):
    scipy_stats = pytest.importorskip("scipy.stats")
    t, df, p = welch_ttest(np.array(a), np.array(b))
    expected = scipy_stats.ttest_ind(b, a, equal_var=False)
    assert t == pytest.approx(expected.statistic, rel=1e-9)
    assert p == pytest.approx(expected.pvalue, rel=1e-7)
    assert df == pytest.approx(expected.df, rel=1e-9)


def test_welch_ttest_edge_cases():
    assert welch_ttest(np.array([0.1, 0.1]), np.array([0.1, 0.1])) == (0.0, math.inf, 1.0)
    t, _, p = welch_ttest(np.array([0.1, 0.1]), np.array([0.2, 0.2]))
    assert t == math.inf and p == 0.0
    with pytest.raises(EclsrError, match="at least two seeds"):
        welch_ttest(np.array([0.1]), np.array([0.2, 0.3]))


# --------------------------------------------------------------------------- seeds for power


@pytest.mark.parametrize("df", [1.0, 1.4, 2.0, 4.6, 10.0, 30.0, 400.0])
def test_noncentral_t_tail_matches_scipy(df, scipy_stats):
    from eclsr.results.power import noncentral_t_sf, student_isf, student_sf

    for t in (-1.0, 0.5, 2.0, 4.0, 9.9):
        assert student_sf(t, df) == pytest.approx(scipy_stats.t.sf(t, df), abs=1e-12)
        for shift in (-3.0, 0.0, 1.5, 4.0, 8.0):
            expected = scipy_stats.nct.sf(t, df, shift)
            assert noncentral_t_sf(t, df, shift) == pytest.approx(expected, abs=1e-6), (t, shift)
    assert student_isf(0.005, df) == pytest.approx(scipy_stats.t.isf(0.005, df), rel=1e-9)


def test_welch_power_is_the_rejection_rate_of_welchs_test(scipy_stats):
    """The planned power is what simulated experiments actually see (Welch's df is itself an
    approximation, so the check allows a point or two beyond the simulation's own noise)."""
    from eclsr.results.power import welch_power

    rng = np.random.default_rng(7)
    diff, sd_a, sd_b, n_a, n_b, reps = 0.0019, 0.0013, 0.0011, 6, 8, 40_000
    a = rng.normal(0.0461, sd_a, size=(reps, n_a))
    b = rng.normal(0.0461 + diff, sd_b, size=(reps, n_b))
    p = scipy_stats.ttest_ind(b, a, axis=1, equal_var=False).pvalue
    simulated = float((p < 0.01).mean())
    assert welch_power(diff, sd_a, sd_b, n_a, n_b, 0.01) == pytest.approx(simulated, abs=0.015)
    # no difference: the power is the test's size, alpha
    assert welch_power(0.0, sd_a, sd_b, n_a, n_b, 0.01) == pytest.approx(0.01, abs=1e-6)


def test_seeds_for_power_is_the_fewest_that_reach_the_target():
    from eclsr.results.power import MAX_SEEDS, plan_seeds, seeds_for_power, welch_power

    needed = seeds_for_power(0.0019, 0.0013, 0.0011, alpha=0.01, target=0.8)
    assert needed is not None and needed > 2
    assert welch_power(0.0019, 0.0013, 0.0011, needed, needed) >= 0.8
    assert welch_power(0.0019, 0.0013, 0.0011, needed - 1, needed - 1) < 0.8
    # a looser level or a bigger difference needs fewer seeds; no difference, never enough
    assert seeds_for_power(0.0019, 0.0013, 0.0011, alpha=0.05) < needed
    assert seeds_for_power(0.0038, 0.0013, 0.0011) < needed
    assert seeds_for_power(0.0, 0.0013, 0.0011) is None
    assert seeds_for_power(1e-7, 0.0013, 0.0011) is None and MAX_SEEDS >= 1000
    # from seed values: the plan reads the observed difference and spreads
    plan = plan_seeds([0.0449, 0.0446, 0.0468], [0.0474, 0.0488, 0.0463])
    assert plan is not None and plan.diff == pytest.approx(0.0020667, abs=1e-6)
    assert plan.sd_a == pytest.approx(np.std([0.0449, 0.0446, 0.0468], ddof=1))
    assert 0.0 < plan.power_now < 0.8 and plan.seeds_needed is not None
    assert plan_seeds([0.04], [0.05, 0.06]) is None


# --------------------------------------------------------------------------- by history length


def _test_history_lengths(run_dir) -> np.ndarray:
    """Leave-one-out test histories, counted straight from the data: all items but the last."""
    from eclsr.results.inference import load_run_data, load_run_recipe

    data = load_run_data(load_run_recipe(run_dir))
    users = np.load(run_dir / "ranks.npz")["users"]
    return data.lengths[users] - 1


def test_compare_by_length_partitions_users(runs, scipy_stats):
    from eclsr.results.by_length import compare_by_length

    a, b = load_run(runs["a"]), load_run(runs["b"])
    lengths = _test_history_lengths(runs["a"])
    assert len(np.unique(lengths)) >= 3, "the synthetic data needs varied lengths for this test"
    middle = int(np.median(lengths))
    groups = compare_by_length(a, b, ["ndcg@10"], edges=[middle, middle + 2])
    assert [g.low for g in groups] == [lengths.min(), middle, middle + 2]
    assert sum(g.users for g in groups) == len(lengths)
    per_user_a = per_user_metric(np.load(runs["a"] / "ranks.npz")["test"], "ndcg@10")
    per_user_b = per_user_metric(np.load(runs["b"] / "ranks.npz")["test"], "ndcg@10")
    for group in groups:
        members = (lengths >= group.low) & (lengths <= group.high)
        assert group.users == members.sum() and group.high == lengths[members].max()
        (test,) = group.tests
        assert test.mean_a == pytest.approx(per_user_a[members].mean())
        assert test.mean_b == pytest.approx(per_user_b[members].mean())
        expected = scipy_stats.ttest_rel(per_user_b[members], per_user_a[members])
        assert test.p_t == pytest.approx(expected.pvalue, nan_ok=True)
    overall = sum(g.tests[0].mean_b * g.users for g in groups) / len(lengths)
    assert overall == pytest.approx(b.results["test"]["ndcg@10"])


def test_compare_by_length_quantile_groups(runs):
    from eclsr.results.by_length import compare_by_length, quantile_edges

    lengths = _test_history_lengths(runs["a"])
    edges = quantile_edges(lengths)
    assert edges == sorted(set(edges)) and all(lengths.min() < e <= lengths.max() for e in edges)
    groups = compare_by_length(load_run(runs["a"]), load_run(runs["b"]), ["recall@10"])
    assert [g.low for g in groups] == [lengths.min(), *edges]
    # quantile groups are filled about equally, up to the ties at a cut
    assert max(g.users for g in groups) <= 2 * len(lengths) / len(groups)


def test_compare_by_length_cli(runs, capsys):
    a, b = str(runs["a"]), str(runs["b"])
    assert main(["compare", a, b, "--by-length", "--metric", "ndcg@10", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sum(r["users"] for r in rows) == len(np.load(runs["a"] / "ranks.npz")["users"])
    assert {"low", "high", "tests"} <= rows[0].keys() and rows[0]["tests"][0]["metric"] == "ndcg@10"
    assert main(["compare", a, b, "--by-length", "4,9"]) == 0
    out = capsys.readouterr().out
    for fragment in ("by history length", "history", "users", "recall@10 A → B", "untruncated"):
        assert fragment in out, fragment
    for bad in ("9,4", "x", "0,3", "4,4"):
        assert main(["compare", a, b, "--by-length", bad]) == 2
        assert "--by-length" in capsys.readouterr().err


def _strict_loads(text: str) -> object:
    """json.loads that refuses NaN and Infinity, as jq and JavaScript do."""

    def refuse(token: str) -> object:
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def test_compare_json_writes_an_undefined_p_value_as_null(runs, tmp_path, capsys):
    # a run whose longest history belongs to one user only: that group has no p-value
    lengths = _test_history_lengths(runs["a"])
    saved = np.load(runs["a"] / "ranks.npz")
    keep = lengths < lengths.max()
    keep[np.flatnonzero(lengths == lengths.max())[0]] = True
    lonely = tmp_path / "lonely"
    shutil.copytree(runs["a"], lonely)
    np.savez(
        lonely / "ranks.npz",
        users=saved["users"][keep],
        test=saved["test"][keep],
        valid=saved["valid"],
    )
    run_dir = str(lonely)
    args = ["compare", run_dir, run_dir, "--metric", "ndcg@10", "--json"]
    assert main([*args, "--by-length", str(lengths.max())]) == 0
    groups = _strict_loads(capsys.readouterr().out)
    assert [g["users"] for g in groups] == [int(keep.sum()) - 1, 1]
    assert groups[1]["tests"][0]["p_t"] is None and groups[0]["tests"][0]["p_t"] is not None
    assert main(args) == 0  # the whole-run output goes through the same writer
    (row,) = _strict_loads(capsys.readouterr().out)
    assert row["diff"] == 0.0 and row["n"] == int(keep.sum())


def test_compare_by_length_refuses_foreign_users(runs, tmp_path):
    from eclsr.results.by_length import compare_by_length

    stranger = tmp_path / "stranger"
    shutil.copytree(runs["a"], stranger)
    saved = np.load(runs["a"] / "ranks.npz")
    users = saved["users"] + 10_000  # users the recipe's data does not have
    np.savez(stranger / "ranks.npz", users=users, test=saved["test"], valid=saved["valid"])
    with pytest.raises(EclsrError, match="do not belong together"):
        compare_by_length(load_run(stranger), load_run(stranger), ["ndcg@10"])


# --------------------------------------------------------------------------- compare over seeds


def _seed_folder(tmp_path, name: str, sources, lift: float = 0.0) -> Path:
    """A collected-style model folder (seed-N/ per run); ``lift`` moves that share of users to rank 1."""
    folder = tmp_path / name
    for source in sources:
        target = folder / f"seed-{json.loads((source / 'results.json').read_text())['seed']}"
        shutil.copytree(source, target)
        if lift:
            saved = dict(np.load(source / "ranks.npz"))
            lifted = np.arange(len(saved["test"])) % round(1 / lift) == 0
            saved["test"] = np.where(lifted, 1, saved["test"])  # ranks count from 1
            np.savez(target / "ranks.npz", **saved)
            results = json.loads((target / "results.json").read_text())
            for metric in results["test"]:  # keep results.json true to the ranks it sits beside
                if metric.split("@")[0] in ("recall", "ndcg"):
                    results["test"][metric] = float(per_user_metric(saved["test"], metric).mean())
            (target / "results.json").write_text(json.dumps(results))
    return folder


def test_compare_seed_folders_average_users_and_add_welch(runs, tmp_path, scipy_stats):
    from eclsr.results.headline import seed_mean
    from eclsr.results.seed_compare import compare_seeds, load_side

    side_a = load_side(_seed_folder(tmp_path, "a", [runs["a"], runs["b"]]))
    side_b = load_side(_seed_folder(tmp_path, "b", [runs["a"], runs["b"]], lift=0.25))
    assert [r.results["seed"] for r in side_a.runs] == [1, 2]
    (result,) = compare_seeds(side_a, side_b, ["ndcg@10"])
    ranks = {
        side: [np.load(r.path / "ranks.npz")["test"] for r in group.runs]
        for side, group in (("a", side_a), ("b", side_b))
    }
    per_user_a, per_user_b = seed_mean(ranks["a"], "ndcg@10"), seed_mean(ranks["b"], "ndcg@10")
    expected = scipy_stats.ttest_rel(per_user_b, per_user_a)
    assert result.test.mean_b > result.test.mean_a and result.paired_a == result.paired_b == [1, 2]
    assert result.test.p_t == pytest.approx(expected.pvalue)
    seed_values = {
        side: [r.results["test"]["ndcg@10"] for r in group.runs]
        for side, group in (("a", side_a), ("b", side_b))
    }
    welch = scipy_stats.ttest_ind(seed_values["b"], seed_values["a"], equal_var=False)
    assert result.p_seeds == pytest.approx(welch.pvalue)


def test_compare_cli_with_seed_folders(runs, tmp_path, capsys):
    folder_b = _seed_folder(tmp_path, "b", [runs["a"], runs["b"]], lift=0.25)
    args = ["compare", str(runs["a"]), str(folder_b), "--metric", "recall@10"]
    assert main([*args, "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    # one run against two seeds: the shared seed is paired, and Welch needs two a side
    assert row["paired_seeds_a"] == row["paired_seeds_b"] == [1] and row["seeds_b"] == [1, 2]
    assert row["p_seeds"] is None and row["significant_across_seeds"] is False
    assert row["power_now"] is None and row["seeds_for_power"] is None
    folder_a = _seed_folder(tmp_path, "a", [runs["a"], runs["b"]])
    assert main(["compare", str(folder_a), str(folder_b)]) == 0
    out = capsys.readouterr().out
    for fragment in ("p (Welch, 2 vs 2 seeds)", "averaged per user", "recall@20", "ndcg@20"):
        assert fragment in out, fragment
    assert "seeds a side for 80% power" in out and "not evidence" in out
    assert "One run a side" not in out  # Welch is there: no caveat to add
    assert main(["compare", str(folder_a), str(folder_b), "--metric", "ndcg@10", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    seed_values = [
        [json.loads((run / "results.json").read_text())["test"]["ndcg@10"] for run in runs_of]
        for runs_of in (sorted(folder_a.iterdir()), sorted(folder_b.iterdir()))
    ]
    assert row["power_now"] == pytest.approx(
        welch_power(
            np.mean(seed_values[1]) - np.mean(seed_values[0]),
            np.std(seed_values[0], ddof=1),
            np.std(seed_values[1], ddof=1),
            2,
            2,
        )
    )
    assert row["power_target"] == 0.8 and (
        row["seeds_for_power"] is None or row["seeds_for_power"] >= 2
    )
    assert main(["compare", str(folder_a), str(folder_b), "--by-length", "--json"]) == 0
    groups = json.loads(capsys.readouterr().out)
    assert sum(g["users"] for g in groups) == len(np.load(runs["a"] / "ranks.npz")["users"])


def _edit_recipe(run_dir: Path, old: str, new: str) -> None:
    """Rewrite one line of a run's recipe.yaml (as a run started with another --set would have)."""
    recipe = run_dir / "recipe.yaml"
    text = recipe.read_text()
    assert old in text, (old, text)
    recipe.write_text(text.replace(old, new, 1))


def test_seeds_of_a_model_must_share_their_recipe(runs, tmp_path, capsys):
    from eclsr.results.headline import load_book
    from eclsr.results.seed_compare import load_side
    from eclsr.results.seed_recipes import recipe_differences

    mixed = _seed_folder(tmp_path, "mixed", [runs["a"], runs["b"]])
    _edit_recipe(mixed / "seed-2", "patience: 10", "patience: 3")
    _edit_recipe(mixed / "seed-2", "weight: 0.1", "weight: 0.5")
    assert main(["compare", str(runs["a"]), str(mixed)]) == 2
    err = capsys.readouterr().err
    assert "differ beyond the seed" in err and "Traceback" not in err, err
    assert "train.patience: 10 (seed 1) vs 3 (seed 2)" in err, err
    assert "heads[1].weight: 0.1 (seed 1) vs 0.5 (seed 2)" in err, err
    with pytest.raises(EclsrError, match="train.patience"):
        load_book(mixed.parent)  # a results book refuses the same group
    # only the seed and run-only fields differ: one experiment
    same = _seed_folder(tmp_path, "same", [runs["a"], runs["b"]])
    _edit_recipe(same / "seed-2", "threads: null", "threads: 1")
    _edit_recipe(same / "seed-2", "description: ''", "description: rerun on another machine")
    assert [r.results["seed"] for r in load_side(same).runs] == [1, 2]
    # a recipe written before a field existed reads as its default, so it agrees
    _edit_recipe(same / "seed-1", "  bucket_by_length: true\n", "")
    assert recipe_differences(load_side(same).runs) == []
    assert main(["compare", str(runs["a"]), str(same), "--metric", "recall@10", "--json"]) == 0
    capsys.readouterr()


def test_compare_refuses_folders_that_are_not_one_models_seeds(runs, tmp_path, capsys):
    mixed = _seed_folder(tmp_path, "mixed", [runs["a"]])
    shutil.copytree(runs["other"], mixed / "other")
    twice = _seed_folder(tmp_path, "twice", [runs["a"]])
    shutil.copytree(runs["a"], twice / "again")
    (tmp_path / "empty").mkdir()
    cases = {
        mixed: "several models",
        twice: "two runs with seed 1",
        tmp_path: "holds folders of runs, not runs",
        tmp_path / "empty": "neither a run directory",
    }
    for side, message in cases.items():
        assert main(["compare", str(runs["a"]), str(side)]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
