"""`eclsr results collect|render`: a results folder of small run files, rendered as markdown."""

from __future__ import annotations

import json
import shutil
import statistics

import numpy as np
import pytest

from eclsr.cli.main import main
from eclsr.engine.train import run as train_run
from eclsr.errors import EclsrError
from eclsr.recipe.load import validate_recipe
from eclsr.results.headline import (
    GENERATED_MARK,
    across_seeds,
    load_book,
    matched_seeds,
    model_name,
    render,
    significance,
)
from eclsr.results.report import load_run, run_command
from eclsr.results.stats import paired_tests, per_user_metric, welch_ttest


def tiny_recipe(name: str, seed: int, infonce: bool) -> dict:
    heads = [{"name": "next_item"}]
    if infonce:
        heads.append({"name": "infonce", "weight": 0.1, "pooling_k": 2})
    return {
        "seed": seed,
        "name": name,
        "data": {
            "dataset": "synthetic",
            "max_len": 8,
            "synthetic_users": 120,
            "synthetic_items": 30,
        },
        "encoder": {"name": "sasrec", "hidden": 16, "layers": 1, "heads": 1, "inner_size": 32},
        "heads": heads,
        "train": {"epochs": 2, "batch_size": 64, "lr": 0.01, "patience": 3, "device": "cpu"},
    }


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("book-runs")
    dirs = {}
    for name, infonce in (("base-synthetic", False), ("contrastive-synthetic", True)):
        for seed in (1, 2):
            out = root / f"{name}-{seed}"
            train_run(validate_recipe(tiny_recipe(name, seed, infonce)), out, progress=False)
            dirs[(name, seed)] = out
    return dirs


@pytest.fixture
def book(run_dirs, tmp_path):
    book = tmp_path / "book"
    assert main(["results", "collect", *map(str, run_dirs.values()), "--into", str(book)]) == 0
    return book


@pytest.fixture
def paper_file(tmp_path):
    path = tmp_path / "paper.toml"
    path.write_text('[synthetic.contrastive]\n"recall@10" = 0.5\n', encoding="utf-8")
    return path


def test_model_name_drops_the_dataset_suffix():
    results = {"recipe": "ecl-sr-code-toys", "protocol": {"dataset": "toys"}}
    assert model_name(results) == "ecl-sr-code"
    assert model_name({"recipe": "mine", "protocol": {"dataset": "toys"}}) == "mine"


def test_collect_keeps_small_files_only(book, run_dirs):
    seed_dir = book / "synthetic" / "contrastive" / "seed-2"
    kept = sorted(path.name for path in seed_dir.iterdir())
    assert kept == ["metrics.jsonl", "ranks.npz", "recipe.yaml", "results.json"]
    assert not list(book.rglob("*.pt"))  # checkpoints stay in the run directories
    original = json.loads((run_dirs[("contrastive-synthetic", 2)] / "results.json").read_text())
    assert json.loads((seed_dir / "results.json").read_text()) == original
    # every run records its own machine: no stand-in that would describe the collecting one
    assert original["machine"] and not (book / "MACHINE.json").exists()


def test_collecting_a_run_without_its_machine_writes_a_stand_in(run_dirs, tmp_path):
    old_run = tmp_path / "old-run"
    shutil.copytree(run_dirs[("base-synthetic", 1)], old_run)
    _set_machine(old_run, None)  # as results.json files written before the record
    book = tmp_path / "book"
    assert main(["results", "collect", str(old_run), "--into", str(book)]) == 0
    machine = json.loads((book / "MACHINE.json").read_text())
    assert machine["cores"] >= 1 and machine["torch"]


def _set_machine(seed_dir, machine):
    results = json.loads((seed_dir / "results.json").read_text())
    if machine is None:
        results.pop("machine", None)
    else:
        results["machine"] = machine
    (seed_dir / "results.json").write_text(json.dumps(results))


def test_a_later_collection_keeps_the_book_machine_file(book, run_dirs):
    # MACHINE.json stands in for runs too old to record their machine: a collection on another
    # machine must not relabel them
    (book / "MACHINE.json").write_text(json.dumps({"cpu": "First CPU", "cores": 2}))
    main(["results", "collect", str(run_dirs[("base-synthetic", 1)]), "--into", str(book)])
    assert json.loads((book / "MACHINE.json").read_text())["cpu"] == "First CPU"


def test_runs_from_two_machines_label_their_wall_times(book):
    other_cpu = {"cpu": "Other CPU", "cores": 4, "memory_gib": 8.0, "system": "Linux 6"}
    _set_machine(book / "synthetic" / "contrastive" / "seed-2", other_cpu)
    text = render(book, baseline="base")
    assert "The runs did not all train on one machine" in text
    assert "- A: " in text and "(3 runs; recorded by the runs)." in text
    assert "- B: Other CPU, 4 cores, 8.0 GiB, no GPU; Linux 6" in text and "(1 run;" in text
    row = next(line for line in text.splitlines() if line.startswith("| contrastive | 1, 2 |"))
    wall = row.rstrip(" |").rsplit("|", 1)[1]
    assert wall.count("(A)") == 1 and wall.rstrip().endswith("(B)")
    base = next(line for line in text.splitlines() if line.startswith("| base | 1, 2 |"))
    assert base.count("(A)") == 2


def test_machine_letters_follow_the_first_rendered_run_not_the_run_counts(book):
    # a book grows a seed at a time: when a second machine comes to hold most runs, the letters
    # already printed beside earlier runs must not swap
    other_cpu = {"cpu": "Other CPU", "cores": 4, "memory_gib": 8.0, "system": "Linux 6"}
    for model, seed in (("contrastive", 1), ("contrastive", 2), ("base", 2)):
        _set_machine(book / "synthetic" / model / f"seed-{seed}", other_cpu)
    text = render(book, baseline="base")
    assert "(1 run; recorded by the runs)." in text.split("- A: ", 1)[1].splitlines()[0]
    assert text.split("- B: ", 1)[1].startswith("Other CPU") and "(3 runs;" in text
    base = next(line for line in text.splitlines() if line.startswith("| base | 1, 2 |"))
    wall = base.rstrip(" |").rsplit("|", 1)[1]
    assert wall.index("(A)") < wall.index("(B)")


def test_a_run_without_a_machine_record_takes_the_book_file(book):
    for seed in (1, 2):
        for model in ("base", "contrastive"):
            _set_machine(book / "synthetic" / model / f"seed-{seed}", None)
    (book / "MACHINE.json").write_text(json.dumps({"cpu": "Old CPU", "cores": 2}))
    text = render(book, baseline="base")
    assert "Machine (recorded by the runs, or by `book/MACHINE.json` for runs older" in text
    assert "Old CPU, 2 cores" in text and "(A)" not in text
    (book / "MACHINE.json").write_text("{broken")
    assert "`book/MACHINE.json` is damaged" in render(book, baseline="base")
    (book / "MACHINE.json").unlink()
    assert "not recorded (runs of `book/` older than the per-run record)" in render(
        book, baseline="base"
    )


def test_collect_as_files_runs_under_another_model_name(run_dirs, tmp_path):
    book = tmp_path / "headline"
    runs = [str(run_dirs[("contrastive-synthetic", seed)]) for seed in (1, 2)]
    before = (run_dirs[("contrastive-synthetic", 1)] / "results.json").read_bytes()
    assert main(["results", "collect", *runs, "--into", str(book), "--as", "my-model"]) == 0
    assert sorted(p.name for p in (book / "synthetic" / "my-model").iterdir()) == [
        "seed-1",
        "seed-2",
    ]
    assert (run_dirs[("contrastive-synthetic", 1)] / "results.json").read_bytes() == before
    copied = json.loads((book / "synthetic" / "my-model" / "seed-1" / "results.json").read_text())
    assert copied["collected_as"] == "my-model" and copied["recipe"] == "contrastive-synthetic"
    assert [group.model for group in load_book(book)] == ["my-model"]
    text = render(book, baseline="my-model")
    assert "| my-model | 1, 2 |" in text
    line = next(line for line in text.splitlines() if line.startswith("- my-model, seed 1:"))
    assert ", collected as `my-model` (its recipe is named `contrastive-synthetic`)" in line


def test_collect_as_cannot_join_two_settings_or_take_a_path(run_dirs, tmp_path, capsys):
    book = tmp_path / "headline"
    mixed = [str(run_dirs[("base-synthetic", 1)]), str(run_dirs[("contrastive-synthetic", 2)])]
    assert main(["results", "collect", *mixed, "--into", str(book), "--as", "one"]) == 2
    assert not book.exists()  # refused before anything was copied
    run = str(run_dirs[("base-synthetic", 1)])
    assert main(["results", "collect", run, "--into", str(book), "--as", "../up"]) == 2
    err = capsys.readouterr().err
    assert "--as '../up' is not a model name" in err and "Traceback" not in err
    assert not book.exists()


def test_collect_replaces_a_rerun(book, run_dirs):
    # collecting the same run again keeps one copy per (dataset, model, seed)
    main(["results", "collect", str(run_dirs[("base-synthetic", 1)]), "--into", str(book)])
    assert len(list(book.rglob("results.json"))) == 4
    groups = load_book(book)
    assert [(g.model, len(g.runs)) for g in groups] == [("base", 2), ("contrastive", 2)]


def test_collect_refuses_a_seed_with_another_recipe_and_keeps_the_book(
    book, run_dirs, tmp_path, capsys
):
    before = {p: p.read_bytes() for p in sorted(book.rglob("*")) if p.is_file()}
    other = tmp_path / "base-synthetic-3-lr"
    shutil.copytree(run_dirs[("base-synthetic", 2)], other)
    results = json.loads((other / "results.json").read_text())
    (other / "results.json").write_text(json.dumps(results | {"seed": 3}))
    recipe = (other / "recipe.yaml").read_text()
    (other / "recipe.yaml").write_text(
        recipe.replace("lr: 0.01", "lr: 0.003").replace("seed: 2", "seed: 3")
    )
    fine = run_dirs[("contrastive-synthetic", 1)]
    assert main(["results", "collect", str(fine), str(other), "--into", str(book)]) == 2
    err = capsys.readouterr().err
    assert "train.lr: 0.01 (seeds 1, 2) vs 0.003 (seed 3)" in err and "Traceback" not in err, err
    after = {p: p.read_bytes() for p in sorted(book.rglob("*")) if p.is_file()}
    assert after == before  # nothing copied, not even the run that was fine
    # a rerun of a seed with a new setting replaces that seed: compared without the old copy
    rerun = tmp_path / "base-synthetic-2-lr"
    shutil.copytree(other, rerun)
    (rerun / "results.json").write_text(json.dumps(results))
    (rerun / "recipe.yaml").write_text(recipe.replace("lr: 0.01", "lr: 0.003"))
    assert main(["results", "collect", str(rerun), "--into", str(book)]) == 2
    assert "(seed 1) vs 0.003 (seed 2)" in capsys.readouterr().err


def test_render_shows_means_paper_values_and_commands(book, paper_file):
    text = render(book, paper_file, baseline="base", command="eclsr results render BOOK")
    assert GENERATED_MARK in text and "`eclsr results render BOOK`" in text
    groups = {group.model: group for group in load_book(book)}
    for model, group in groups.items():
        recalls = [run.results["test"]["recall@10"] for run in group.runs]
        expected = f"{statistics.fmean(recalls):.4f} ± {statistics.stdev(recalls):.4f}"
        row = next(line for line in text.splitlines() if line.startswith(f"| {model} | 1, 2 |"))
        assert expected in row
        for run in group.runs:
            # recorded, or rebuilt: no recipe file under recipes/ has these synthetic runs' name,
            # so the command runs each run's own recipe.yaml
            assert f"`{run_command(run.results, run_dir=run.path)}`" in text
            if not run.results.get("command"):
                assert f"`eclsr run {(run.path / 'recipe.yaml').as_posix()}`" in text
    contrastive_row = next(line for line in text.splitlines() if line.startswith("| contrastive |"))
    assert "(paper 0.5000)" in contrastive_row  # `contrastive` matches the paper's name exactly
    assert f"come from `{paper_file.as_posix()}`" in text
    base_row = next(line for line in text.splitlines() if line.startswith("| base |"))
    assert "paper" not in base_row


def test_render_gives_ratios_to_the_baseline_beside_the_papers(
    book, run_dirs, tmp_path, paper_file
):
    assert "ratio to base" not in render(book, paper_file, baseline="base")  # no paper baseline
    ablation = [str(path) for (name, _), path in run_dirs.items() if name.startswith("contrastive")]
    assert main(["results", "collect", *ablation, "--into", str(book), "--as", "ablation"]) == 0
    paper = tmp_path / "paper-both.toml"
    paper.write_text(
        '[synthetic.contrastive]\n"recall@10" = 0.5\n[synthetic.base]\n"recall@10" = 0.4\n',
        encoding="utf-8",
    )
    text = render(book, paper, baseline="base")
    groups = {group.model: group for group in load_book(book)}

    def mean(model: str, metric: str) -> float:
        return statistics.fmean(run.results["test"][metric] for run in groups[model].runs)

    row = next(
        line
        for line in text.splitlines()
        if line.startswith("| contrastive | ") and "(paper 1.250)" in line
    )
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    header = next(
        line for line in text.splitlines() if line.startswith("| ratio to base (seed means) |")
    )
    metrics = [cell.strip() for cell in header.strip("|").split("|")][1:]
    for metric, cell in zip(metrics, cells[1:], strict=True):
        ours = f"{mean('contrastive', metric) / mean('base', metric):.3f}"
        assert cell == (f"{ours} (paper 1.250)" if metric == "recall@10" else ours)
    ratio_table = text[text.index("| ratio to base (seed means) |") :].split("\n\n", 1)[0]
    ablation_row = next(
        line for line in ratio_table.splitlines() if line.startswith("| ablation |")
    )
    assert "paper" not in ablation_row  # no published value, still compared with the baseline
    assert "| base |" not in ratio_table


def test_significance_pairs_users_with_seeds_averaged(book):
    groups = {group.model: group for group in load_book(book)}
    tests = significance(groups["base"], groups["contrastive"], ["ndcg@10"])

    def averaged(group):
        values = []
        for run in group.runs:
            with np.load(run.path / "ranks.npz") as saved:
                values.append(per_user_metric(saved["test"], "ndcg@10"))
        return np.mean(values, axis=0)

    expected = paired_tests(averaged(groups["base"]), averaged(groups["contrastive"]), "ndcg@10")
    assert tests[0] == expected
    assert tests[0].n == 120


def test_render_orders_models_and_names_the_baseline(book):
    text = render(book, baseline="base", order=["contrastive", "base"])
    assert text.index("| contrastive | 1, 2 |") < text.index("| base | 1, 2 |")
    assert "| vs base | users |" in text
    missing = render(book, baseline="absent")
    assert "No significance tests: this dataset needs `absent`" in missing


def test_render_out_refuses_a_file_it_did_not_write(book, tmp_path, capsys):
    out = tmp_path / "RESULTS.md"
    out.write_text("my notes\n", encoding="utf-8")
    code = main(["results", "render", str(book), "--baseline", "base", "--out", str(out)])
    assert code == 2
    assert "left untouched" in capsys.readouterr().err
    assert out.read_text(encoding="utf-8") == "my notes\n"
    out.unlink()
    assert main(["results", "render", str(book), "--baseline", "base", "--out", str(out)]) == 0
    first = out.read_text(encoding="utf-8")
    assert f"--out {out}" in first
    # a file it wrote itself is regenerated in place, identically from the same inputs
    assert main(["results", "render", str(book), "--baseline", "base", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == first


def test_bad_inputs_fail_with_a_message(tmp_path, capsys):
    assert main(["results", "collect", str(tmp_path), "--into", str(tmp_path / "b")]) == 2
    assert "results.json" in capsys.readouterr().err
    assert main(["results", "render", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(EclsrError, match="holds no results.json"):
        load_book(tmp_path / "empty")
    bad = tmp_path / "paper.toml"
    bad.write_text("[x\n", encoding="utf-8")
    book = tmp_path / "book"
    (book / "synthetic").mkdir(parents=True)
    with pytest.raises(EclsrError, match="must be TOML"):
        render(book, bad)


def test_load_run_reads_a_collected_run(book):
    run_record = load_run(book / "synthetic" / "base" / "seed-1")
    assert run_record.results["seed"] == 1 and run_record.history


def test_pairs_add_tests_between_two_models(book, capsys):
    text = render(book, baseline="base", pairs=[("contrastive", "base"), ("base", "absent")])
    row = next(line for line in text.splitlines() if line.startswith("| base vs contrastive |"))
    groups = {group.model: group for group in load_book(book)}
    expected = significance(groups["contrastive"], groups["base"], ["recall@10"])[0]
    assert f"{expected.diff:+.4f} (t p={expected.p_t:.1e}" in row
    assert "absent" not in text  # a pair with a model the dataset lacks is skipped
    assert main(["results", "render", str(book), "--pair", "no-colon"]) == 2
    assert "joined by a colon" in capsys.readouterr().err


def test_render_adds_a_test_across_seeds_when_both_models_have_two(book, tmp_path):
    groups = {group.model: group for group in load_book(book)}
    expected = across_seeds(groups["base"], groups["contrastive"], "recall@10")
    values = {
        model: [run.results["test"]["recall@10"] for run in group.runs]
        for model, group in groups.items()
    }
    assert expected == welch_ttest(np.array(values["base"]), np.array(values["contrastive"]))[2]
    text = render(book, baseline="base")
    row = next(line for line in text.splitlines() if line.startswith("| contrastive | 120 |"))
    assert f"seeds p={expected:.1e}" in row
    assert "Welch's t-test over the seeds" in text
    # not below .01 across seeds: the seeds a side it would need, from the same seed values
    from eclsr.results.power import plan_seeds

    plan = plan_seeds(values["base"], values["contrastive"], 0.01)
    assert expected >= 0.01 and plan is not None  # two seeds a side rarely reach .01
    needed = "n80>1000" if plan.seeds_needed is None else f"n80={plan.seeds_needed}"
    assert f"seeds p={expected:.1e}, {needed})" in row and "80% power" in text
    # with one seed of the baseline there is no spread to test against: the column is left out
    single = tmp_path / "single"
    shutil.copytree(book, single)
    shutil.rmtree(single / "synthetic" / "base" / "seed-2")
    one = {group.model: group for group in load_book(single)}
    assert across_seeds(one["base"], one["contrastive"], "recall@10") is None
    row = next(
        line
        for line in render(single, baseline="base").splitlines()
        if line.startswith("| contrastive | 120 (seeds 1 vs 1) |")
    )
    assert "seeds p" not in row and "t p=" in row


def test_the_significance_mark_needs_every_test_shown(book, monkeypatch):
    import eclsr.results.headline as headline

    monkeypatch.setattr(headline, "SIGNIFICANCE_ALPHA", 1.01)  # every p-value passes
    row = render(book, baseline="base").split("| vs base |")[1].splitlines()[2]
    assert " *" in row and "n80" not in row  # significant across seeds: no plan for more
    monkeypatch.setattr(headline, "across_seeds", lambda a, b, metric: 1.02)
    rows = render(book, baseline="base").split("| vs base |")[1].splitlines()
    assert "seeds p=1.0e+00" in rows[2] and " *" not in rows[2]


def test_commands_name_the_code_commit_a_run_recorded(book):
    seed_dir = book / "synthetic" / "base" / "seed-1"
    results = json.loads((seed_dir / "results.json").read_text())
    results["code"] = {"eclsr": "0.1.0", "torch": "2", "git_commit": "a" * 40, "git_dirty": True}
    results["machine"] = {"cpu": "Some CPU", "cores": 2}
    (seed_dir / "results.json").write_text(json.dumps(results))
    older = book / "synthetic" / "base" / "seed-2" / "results.json"  # a run from before stamping
    older_results = json.loads(older.read_text())
    older_results.pop("code", None)
    older.write_text(json.dumps(older_results))
    text = render(book, baseline="base")
    line = next(line for line in text.splitlines() if line.startswith("- base, seed 1:"))
    assert line.endswith("(code aaaaaaa with local changes, eclsr 0.1.0, Some CPU)")
    other = next(line for line in text.splitlines() if line.startswith("- base, seed 2:"))
    assert other.endswith("`") and "(code" not in other


def test_commands_of_a_resumed_run_name_the_resuming_commands(book):
    seed_dir = book / "synthetic" / "base" / "seed-1"
    results = json.loads((seed_dir / "results.json").read_text())
    results["command"] = "eclsr run base.toml --out runs/b"
    results["resumed_with"] = ["eclsr resume runs/b", "eclsr resume runs/b --no-progress"]
    (seed_dir / "results.json").write_text(json.dumps(results))
    line = next(
        line
        for line in render(book, baseline="base").splitlines()
        if line.startswith("- base, seed 1:")
    )
    assert line.startswith(
        "- base, seed 1: `eclsr run base.toml --out runs/b`, resumed with `eclsr resume runs/b`, "
        "then `eclsr resume runs/b --no-progress`"
    )


def test_several_books_render_as_one_with_models_named_by_folder(book, tmp_path, capsys):
    # the same recipe under another setting: a second folder, the same model names and seeds
    other = tmp_path / "setting-b"
    shutil.copytree(book / "synthetic" / "contrastive", other / "synthetic" / "contrastive")
    text = render([book, other], baseline="book/base")
    assert "| book/base | 1, 2 |" in text and "| setting-b/contrastive | 1, 2 |" in text
    assert "| book/contrastive | 1, 2 |" in text
    assert f"`{book.as_posix()}/`, `{other.as_posix()}/`" in text
    groups = {group.model: group for group in load_book(book)}
    expected = significance(groups["base"], groups["contrastive"], ["recall@10"])[0]
    row = next(
        line for line in text.splitlines() if line.startswith("| setting-b/contrastive | 120 |")
    )
    assert f"{expected.diff:+.4f} (t p={expected.p_t:.1e}" in row  # same runs, same test
    assert "Machine (recorded by the runs): " in text  # both folders' runs trained here
    out = tmp_path / "R.md"
    args = [
        "results",
        "render",
        str(book),
        str(other),
        "--baseline",
        "book/base",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    assert f"`eclsr results render {book} {other} --baseline book/base" in out.read_text()
    twin = tmp_path / "again" / "book"
    shutil.copytree(book, twin)
    with pytest.raises(EclsrError, match="'book' is given twice"):
        render([book, twin])


def _write_synthetic_run(book, model: str, seed: int, ranks: np.ndarray) -> None:
    folder = book / "synthetic" / model / f"seed-{seed}"
    folder.mkdir(parents=True)
    users = np.arange(ranks.size)
    np.savez(folder / "ranks.npz", users=users, test=ranks, valid=ranks)
    results = {"recipe": f"{model}-synthetic", "seed": seed, "protocol": {"dataset": "synthetic"}}
    results["test"] = {"recall@10": float(np.mean(ranks <= 10))}
    (folder / "results.json").write_text(json.dumps(results))


def test_unequal_seed_counts_pair_the_same_number_of_seeds(tmp_path):
    """Three seeds averaged against one gives skewed per-user differences even for the same
    model; the per-user tests must then use one seed on each side, the shared one first."""
    rng = np.random.default_rng(7)
    book = tmp_path / "book"

    def write(model: str, seed: int) -> None:
        ranks = rng.geometric(0.02, size=4000).astype(np.int64)  # the same model every seed
        _write_synthetic_run(book, model, seed, ranks)

    write("base", 42)
    for seed in (42, 43, 44):
        write("many", seed)
    groups = {group.model: group for group in load_book(book)}
    kept_base, kept_many = matched_seeds(groups["base"], groups["many"])
    assert [run.results["seed"] for run in kept_many.runs] == [42]
    assert [run.results["seed"] for run in kept_base.runs] == [42]
    test = significance(groups["base"], groups["many"], ["recall@10"])[0]
    skewed = paired_tests(
        per_user_metric(np.load(kept_base.runs[0].path / "ranks.npz")["test"], "recall@10"),
        np.mean(
            [
                per_user_metric(np.load(run.path / "ranks.npz")["test"], "recall@10")
                for run in groups["many"].runs
            ],
            axis=0,
        ),
        "recall@10",
    )
    assert skewed.p_w < 0.001 < 0.5 < skewed.p_t  # the old averaging: Wilcoxon "finds" noise
    assert test.p_w > 0.01 and test.p_t > 0.01
    text = render(book, baseline="base", metrics=["recall@10"])
    row = next(line for line in text.splitlines() if line.startswith("| many | 4000"))
    assert "| many | 4000 (seeds 42 vs 42) |" in row


@pytest.mark.parametrize(("better_seed", "starred"), [(42, True), (43, False)])
def test_one_run_against_one_run_of_another_seed_earns_no_star(tmp_path, better_seed, starred):
    """Per-user tests hold each trained model fixed: between two seeds they also measure the
    seeds' difference, so with no across-seed test to separate it there is no star."""
    rng = np.random.default_rng(3)
    book = tmp_path / "book"
    _write_synthetic_run(book, "base", 42, rng.geometric(0.02, size=4000).astype(np.int64))
    better = rng.geometric(0.2, size=4000).astype(np.int64)  # far better: per-user p is tiny
    _write_synthetic_run(book, "better", better_seed, better)
    text = render(book, baseline="base", metrics=["recall@10"])
    row = next(line for line in text.splitlines() if line.startswith("| better | 4000"))
    assert "t p=" in row and float(row.split("t p=")[1].split(",")[0]) < 1e-10
    assert row.rstrip(" |").endswith(" *") is starred
    assert ("seeds 42 vs 43; seeds differ, one a side: no `*`" in row) is not starred


def test_render_by_length_tests_each_group_with_seeds_averaged(book, capsys):
    from eclsr.results.by_length import LengthSplit
    from eclsr.results.inference import load_run_data, load_run_recipe

    groups = {group.model: group for group in load_book(book)}
    base, contrastive = groups["base"], groups["contrastive"]
    data = load_run_data(load_run_recipe(base.runs[0].path))
    users = np.load(base.runs[0].path / "ranks.npz")["users"]
    lengths = data.lengths[users] - 1  # leave-one-out: the test target's history is all but it
    middle = int(np.median(lengths))
    text = render(book, baseline="base", by_length=LengthSplit([middle]))
    title = "contrastive (B) vs base (A) by history length"
    assert title in text and "seeds 1, 2 vs 1, 2, averaged per user" in text
    rows = text.split(title)[1].split("\n\n")[1].splitlines()[2:]  # after the header
    assert len(rows) == 2  # below the median and from it on
    per_user_a = np.mean(
        [per_user_metric(np.load(r.path / "ranks.npz")["test"], "ndcg@10") for r in base.runs],
        axis=0,
    )
    per_user_b = np.mean(
        [
            per_user_metric(np.load(r.path / "ranks.npz")["test"], "ndcg@10")
            for r in contrastive.runs
        ],
        axis=0,
    )
    for row, members in zip(rows, (lengths < middle, lengths >= middle), strict=True):
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[0].startswith(str(lengths[members].min())) and cells[1] == str(members.sum())
        expected = paired_tests(per_user_a[members], per_user_b[members])
        assert cells[4].startswith(
            f"{expected.mean_a:.4f} → {expected.mean_b:.4f} ({expected.diff:+.4f}"
        )
        assert f"p={expected.p_t:.1e})" in cells[4]
    assert "by history length" not in render(book, baseline="base")
    assert main(["results", "render", str(book), "--baseline", "base", "--by-length", "3,2"]) == 2
    assert "--by-length" in capsys.readouterr().err
