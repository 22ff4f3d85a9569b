"""``eclsr tune``: space checks, pruning, failed trials, resume after SIGKILL, two workers, report.

Every study here is tiny (a few dozen synthetic users, hidden 16, 1–3 epochs) so the file runs in
well under a minute of CPU per test on a shared 2-core machine.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from eclsr.cli.main import main  # noqa: E402
from eclsr.errors import TuneError  # noqa: E402
from eclsr.recipe.load import validate_recipe  # noqa: E402
from eclsr.tune.space import check_space, parse_space, read_space  # noqa: E402
from eclsr.tune.study import (  # noqa: E402
    TuneSettings,
    counts,
    open_storage,
    open_study,
    run_worker,
    tune,
)

RECIPE = {
    "seed": 3,
    "name": "tiny",
    "data": {"dataset": "synthetic", "max_len": 10, "synthetic_users": 60, "synthetic_items": 30},
    "encoder": {"name": "sasrec", "hidden": 16, "layers": 1, "heads": 1},
    "heads": [{"name": "next_item"}, {"name": "infonce", "weight": 0.1, "pooling_k": 3}],
    "train": {"epochs": 2, "batch_size": 16, "monitor": "valid.ndcg@10", "threads": 1},
}
RECIPE_TOML = """
seed = 3
data = { dataset = "synthetic", max_len = 10, synthetic_users = 60, synthetic_items = 30 }
encoder = { name = "sasrec", hidden = 16, layers = 1, heads = 1 }
[[heads]]
name = "next_item"
[[heads]]
name = "infonce"
weight = 0.1
pooling_k = 3
[train]
epochs = 2
batch_size = 16
monitor = "valid.ndcg@10"
threads = 1
"""
SPACE_TOML = """
[params."train.lr"]
type = "log-float"
low = 1e-4
high = 1e-2
[params."heads[1].weight"]
type = "float"
low = 0.0
high = 0.5
"""


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ECLSR_CACHE_DIR", str(tmp_path / "cache"))


def _check(space: dict) -> None:
    recipe = validate_recipe(RECIPE)
    check_space(parse_space(space, "space.toml"), RECIPE, recipe, validate_recipe)


def _settings(tmp_path: Path, space: dict, **kwargs) -> TuneSettings:
    recipe = {**RECIPE, **kwargs.pop("recipe", {})}
    options = {"trials": 2, "out": tmp_path / "study", "study_name": "tiny", **kwargs}
    return TuneSettings(recipe_data=recipe, space=parse_space(space), **options)


# --- the space is checked before anything runs -------------------------------------------------


def test_a_path_the_schema_lacks_is_a_located_error_listing_the_fields():
    with pytest.raises(TuneError) as info:
        _check({"params": {"train.learning_rate": {"type": "float", "low": 0.1, "high": 0.2}}})
    text = str(info.value)
    assert 'space.toml, params."train.learning_rate"' in text
    assert "has no field 'learning_rate'" in text and "Valid fields:" in text and "lr" in text


def test_an_index_past_the_heads_lists_the_heads():
    with pytest.raises(TuneError, match=r"\[0\] 'next_item', \[1\] 'infonce'"):
        _check({"params": {"heads[3].weight": {"type": "float", "low": 0.1, "high": 0.2}}})


def test_a_field_of_another_head_kind_is_refused_with_that_heads_fields():
    with pytest.raises(TuneError, match=r"heads\[0\] \('next_item'\) has no field 'temperature'"):
        _check({"params": {"heads[0].temperature": {"type": "float", "low": 0.1, "high": 0.2}}})


@pytest.mark.parametrize(
    ("path", "low", "high", "bound"),
    [("heads[1].weight", -0.5, 0.5, ">= 0.0"), ("train.lr", 0.0, 0.1, "> 0")],
)
def test_a_range_outside_the_fields_bounds_is_refused(path, low, high, bound):
    with pytest.raises(TuneError) as info:
        _check({"params": {path: {"type": "float", "low": low, "high": high}}})
    assert "low end" in str(info.value) and bound in str(info.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"type": "gaussian", "low": 1, "high": 2},
            "Valid types: float, log-float, int, categorical",
        ),
        (
            {"type": "float", "low": 1, "high": 2.5},
            "does not validate at the high end",
        ),  # epochs: int
        ({"type": "int", "low": 1.5, "high": 3}, "must be an integer"),
        ({"type": "int", "low": 3, "high": 1}, "above high"),
        ({"type": "categorical", "choices": []}, "non-empty list"),
        ({"type": "float", "low": 1, "high": 2, "mean": 0}, "unknown key(s) 'mean'"),
    ],
)
def test_bad_types_and_ranges_are_refused(spec, message):
    with pytest.raises(TuneError) as info:
        _check({"params": {"train.epochs": spec}})
    assert message in str(info.value)


def test_a_choice_the_recipe_refuses_is_named():
    with pytest.raises(TuneError, match=r"choice 'sgd'.*train.optimizer"):
        _check({"params": {"train.optimizer": {"type": "categorical", "choices": ["adam", "sgd"]}}})


def test_the_cli_exits_2_on_a_bad_space_before_any_trial(tmp_path, capsys):
    (tmp_path / "r.toml").write_text(RECIPE_TOML)
    (tmp_path / "s.toml").write_text(
        '[params."train.lr"]\ntype = "float"\nlow = -1.0\nhigh = 0.1\n'
    )
    argv = ["tune", str(tmp_path / "r.toml"), "--space", str(tmp_path / "s.toml"), "--trials", "2",
            "--out", str(tmp_path / "o")]  # fmt: skip
    assert main(argv) == 2
    assert "outside the field's bounds" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--trials", "0"), ("--heartbeat", "0"), ("--timeout", "-1"), ("--workers", "999")],
)
def test_bad_numbers_on_the_command_line_exit_2(tmp_path, capsys, flag, value):
    (tmp_path / "r.toml").write_text(RECIPE_TOML)
    (tmp_path / "s.toml").write_text(SPACE_TOML)
    argv = ["tune", str(tmp_path / "r.toml"), "--space", str(tmp_path / "s.toml"), "--trials", "2",
            "--out", str(tmp_path / "o"), flag, value]  # fmt: skip
    assert main(argv) == 2
    assert flag in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_missing_optuna_names_the_extra(monkeypatch):
    import importlib.util

    from eclsr.tune.study import require_optuna

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a)
    )
    with pytest.raises(TuneError, match=r"eclsr\[tune\]"):
        require_optuna()


def test_read_space_reads_a_file(tmp_path):
    (tmp_path / "s.toml").write_text(SPACE_TOML)
    space = read_space(tmp_path / "s.toml")
    assert [p.path for p in space.params] == ["train.lr", "heads[1].weight"]
    assert space.params[0].log and space.params[1].parts == ("heads", 1, "weight")


# --- trials ------------------------------------------------------------------------------------


def test_pruning_stops_a_bad_trial_early(tmp_path):
    space = {"params": {"train.lr": {"type": "categorical", "choices": [0.02, 1e-7]}}}
    settings = _settings(
        tmp_path, space, trials=2, pruner_startup=1, pruner_warmup=0,
        recipe={"train": {**RECIPE["train"], "epochs": 4, "patience": 10}},
    )  # fmt: skip
    study = open_study(settings)
    study.enqueue_trial({"train.lr": 0.02})  # learns the Markov chain: the median to beat
    study.enqueue_trial({"train.lr": 1e-7})  # learns nothing: below the median after epoch 0
    run_worker(settings)
    good, bad = study.get_trials()
    assert good.state.name == "COMPLETE" and len(good.intermediate_values) == 4
    assert bad.state.name == "PRUNED" and len(bad.intermediate_values) < 4
    lines = (Path(bad.user_attrs["run_dir"]) / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(bad.intermediate_values)  # its run directory stopped there too


def test_a_trial_with_values_the_recipe_refuses_is_failed_and_the_study_goes_on(tmp_path):
    space = {"params": {"train.examples.min_length": {"type": "int", "low": 1, "high": 3}}}
    settings = _settings(tmp_path, space, trials=2)  # not checked: min_length > 1 is invalid here
    study = open_study(settings)
    study.enqueue_trial({"train.examples.min_length": 2})
    study.enqueue_trial({"train.examples.min_length": 1})
    run_worker(settings)
    failed, complete = study.get_trials()
    assert failed.state.name == "FAIL" and "min_length" in failed.user_attrs["error"]
    assert counts(failed) and complete.state.name == "COMPLETE"
    assert (Path(complete.user_attrs["run_dir"]) / "results.json").is_file()


def test_two_workers_share_one_sqlite_study_and_run_exactly_n_trials(tmp_path):
    space = {"params": {"train.lr": {"type": "log-float", "low": 1e-4, "high": 1e-2}}}
    settings = _settings(tmp_path, space, trials=4, workers=2, threads=1)
    study = tune(settings)
    trials = study.get_trials()
    assert len(trials) == 4
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert {t.state.name for t in trials} == {"COMPLETE"}
    assert len({t.user_attrs["run_dir"] for t in trials}) == 4


@pytest.mark.parametrize(
    "race",
    [
        "(sqlite3.OperationalError) table studies already exists",
        "(sqlite3.IntegrityError) UNIQUE constraint failed: alembic_version.version_num",
    ],
)
def test_opening_a_database_another_process_is_creating_waits_for_it(tmp_path, monkeypatch, race):
    # Two workers started at once both create a fresh database's schema; the slower one fails
    # with one of these errors (seen in CI) and must open the finished schema on a retry.
    real = optuna.storages.RDBStorage
    calls = []

    def racing_storage(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 1:
            raise RuntimeError(race)
        return real(*args, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing_storage)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    assert len(calls) == 2 and storage.get_all_studies() == []


def test_a_storage_error_that_is_no_race_is_reported_at_once(tmp_path, monkeypatch):
    calls = []

    def broken_storage(*args, **kwargs):
        calls.append(args[0])
        raise RuntimeError("(sqlite3.OperationalError) unable to open database file")

    monkeypatch.setattr(optuna.storages, "RDBStorage", broken_storage)
    with pytest.raises(TuneError, match="cannot be opened.*unable to open database file"):
        open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    assert len(calls) == 1


def test_resume_after_sigkill_finishes_the_remaining_trials(tmp_path):
    # 30 epochs of ~0.1 s: a wide window to kill a trial in, whatever the machine's load.
    (tmp_path / "r.toml").write_text(
        RECIPE_TOML.replace("epochs = 2", "epochs = 30\npatience = 30")
    )
    (tmp_path / "s.toml").write_text(SPACE_TOML)
    out = tmp_path / "o"
    argv = [sys.executable, "-m", "eclsr", "tune", str(tmp_path / "r.toml"), "--space",
            str(tmp_path / "s.toml"), "--trials", "4", "--out", str(out), "--heartbeat", "1",
            "--study", "r"]  # fmt: skip
    env = {**os.environ, "ECLSR_CACHE_DIR": str(tmp_path / "cache")}
    first = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"sqlite:///{out.resolve() / 'study.db'}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # kill once one trial finished and the next
            time.sleep(0.2)  # has trained a few of its 30 epochs
            trials = _trials(url)
            states = [t.state.name for t in trials]
            if "COMPLETE" in states and states[-1] == "RUNNING":
                if 0 < len(trials[-1].intermediate_values) < 20:
                    break
            assert first.poll() is None, first.stdout.read().decode()[-2000:]
        os.kill(first.pid, signal.SIGKILL)
    finally:
        first.wait(timeout=60)
    killed = _states(url)
    assert killed[-1] == "RUNNING" and killed.count("COMPLETE") < 4
    time.sleep(2.5)  # the killed trial's heartbeat goes stale (grace = 2 × 1 s)
    second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    study = optuna.load_study(study_name="r", storage=url)
    trials = study.get_trials()
    assert sum(counts(t) for t in trials) == 4  # the budget, finished
    assert [t.state.name for t in trials if counts(t)] == ["COMPLETE"] * 4
    lost = [t for t in trials if not counts(t)]
    assert len(lost) == 1 and lost[0].number == len(killed) - 1  # only the running trial was lost
    assert len({t.number for t in trials}) == len(trials)


def _trials(url: str) -> list:
    try:
        study = optuna.load_study(study_name="r", storage=url)
    except Exception:  # not created yet
        return []
    return study.get_trials(deepcopy=False)


def _states(url: str) -> list[str]:
    return [t.state.name for t in _trials(url)]


# --- report ------------------------------------------------------------------------------------


def test_report_writes_a_runnable_best_recipe_a_table_and_plots(tmp_path, capsys):
    (tmp_path / "r.toml").write_text(RECIPE_TOML.replace("epochs = 2", "epochs = 1"))
    (tmp_path / "s.toml").write_text(SPACE_TOML)
    out = tmp_path / "o"
    argv = ["tune", str(tmp_path / "r.toml"), "--space", str(tmp_path / "s.toml"),
            "--trials", "2", "--out", str(out), "--study", "r"]  # fmt: skip
    assert main(argv) == 0
    assert capsys.readouterr().out.count("value ") == 2
    assert main(["tune", "report", "r", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "top trials" in printed and "trial-0001" in printed
    best = tomllib.loads((out / "report" / "best.toml").read_text())
    assert best["name"] == "r-best" and best["train"]["epochs"] == 1
    assert validate_recipe(best).heads[1].weight == pytest.approx(best["heads"][1]["weight"])
    from eclsr.engine.train import run

    rerun = run(validate_recipe(best), progress=False).results["valid"]["ndcg@10"]
    study = optuna.load_study(study_name="r", storage=f"sqlite:///{out.resolve() / 'study.db'}")
    assert rerun == study.best_value  # the best recipe reproduces its trial exactly
    pngs = {p.name for p in (out / "report").glob("*.png")}
    assert {"history.png", "slice-train.lr.png", "slice-heads_1_.weight.png"} <= pngs
    assert main(["tune", "report", "nope", "--out", str(out)]) == 2
    assert "Studies there: 'r'" in capsys.readouterr().err
    results = json.loads((out / "trials" / "trial-0000" / "results.json").read_text())
    assert results["recipe"] == "r-trial-0000"  # a normal run directory, collectable


def test_paired_tunes_the_baseline_alike_and_tests_both_winners_over_seeds(tmp_path, capsys):
    (tmp_path / "r.toml").write_text(RECIPE_TOML.replace("epochs = 2", "epochs = 1"))
    baseline = RECIPE_TOML.replace("epochs = 2", "epochs = 1")
    baseline = baseline.replace('[[heads]]\nname = "infonce"\nweight = 0.1\npooling_k = 3\n', "")
    (tmp_path / "b.toml").write_text(baseline)
    (tmp_path / "s.toml").write_text(SPACE_TOML)
    out = tmp_path / "o"
    argv = ["tune", str(tmp_path / "r.toml"), "--space", str(tmp_path / "s.toml"), "--trials", "2",
            "--out", str(out), "--study", "r", "--paired", str(tmp_path / "b.toml"), "--seeds", "2"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "the baseline has no heads[1].weight" in printed
    assert "p across seeds" in printed and "ndcg@10" in printed
    storage_flag = f"--storage sqlite:///{out.resolve() / 'study.db'}"
    assert (
        f"report: eclsr tune report r-baseline --out {out / 'baseline'} {storage_flag}" in printed
    )
    storage = f"sqlite:///{out.resolve() / 'study.db'}"
    base = optuna.load_study(study_name="r-baseline", storage=storage)
    assert len(base.trials) == 2 and set(base.trials[0].params) == {"train.lr"}  # same budget
    for model in ("tuned", "baseline"):
        for seed in (3, 4):
            results = json.loads(
                (out / "paired" / model / f"seed-{seed}" / "results.json").read_text()
            )
            assert results["seed"] == seed
            assert results["command"] == shlex.join(["eclsr", *argv])  # what reruns it
    trial = json.loads((out / "trials" / "trial-0000" / "results.json").read_text())
    assert trial["command"] == shlex.join(["eclsr", *argv])
    # Tuned on a proxy (1 epoch), rerun for real: the full studies are kept, both winners rerun
    # with the change in a folder of their own, and the proxy reruns stay as they were.
    proxy = (out / "paired" / "tuned" / "seed-3" / "results.json").read_text()
    assert main([*argv, "--rerun-set", "train.epochs=2"]) == 0
    printed = capsys.readouterr().out
    assert "rerunning both winners with train.epochs=2" in printed and "p across seeds" in printed
    valid = [
        json.loads(
            (out / "paired-train.epochs=2" / "tuned" / f"seed-{seed}" / "results.json").read_text()
        )["valid"]["ndcg@10"]
        for seed in (3, 4)
    ]
    trial = optuna.load_study(study_name="r", storage=storage).best_value
    mean_sd = f"{statistics.fmean(valid):.4f} ± {statistics.stdev(valid):.4f}"
    assert (
        f"B: valid ndcg@10 {trial:.4f} in its trial, {mean_sd} in the reruns with train.epochs=2"
        in printed
    )
    assert len(optuna.load_study(study_name="r", storage=storage).trials) == 2  # nothing re-tuned
    for model in ("tuned", "baseline"):
        for seed in (3, 4):
            folder = out / "paired-train.epochs=2" / model / f"seed-{seed}"
            assert json.loads((folder / "results.json").read_text())["epochs_run"] == 2
    assert (out / "paired" / "tuned" / "seed-3" / "results.json").read_text() == proxy


def test_rerun_values_are_checked_before_any_trial_runs(tmp_path, capsys):
    (tmp_path / "r.toml").write_text(RECIPE_TOML)
    (tmp_path / "s.toml").write_text(SPACE_TOML)
    out = tmp_path / "o"
    argv = ["tune", str(tmp_path / "r.toml"), "--space", str(tmp_path / "s.toml"), "--trials", "2",
            "--out", str(out), "--rerun-set", "train.examples.mode=prefix"]  # fmt: skip
    assert main(argv) == 2
    assert "pass --paired BASELINE too" in capsys.readouterr().err
    assert main([*argv, "--paired", str(tmp_path / "r.toml")]) == 2
    err = capsys.readouterr().err
    assert "--rerun-set" in err and "'prefixes'" in err  # the valid modes are listed
    assert not out.exists()  # refused before the study was created


def test_rerun_folders_are_named_by_their_changes():
    from eclsr.tune.paired import reruns_folder

    out = Path("o")
    assert reruns_folder(out) == out / "paired"
    mode = ["train.examples.mode=prefixes", "train.epochs=200"]
    assert reruns_folder(out, mode) == out / "paired-train.examples.mode=prefixes+train.epochs=200"
    odd = reruns_folder(out, ["data.path=/x y/z"])
    assert odd.parent == out and odd.name.startswith("paired-") and "/" not in odd.name[7:]
    assert odd != reruns_folder(out, ["data.path=/x y/w"])


def test_a_finished_rerun_of_another_recipe_is_refused_and_other_threads_are_kept(tmp_path):
    from eclsr.tune.paired import plan_reruns, run_reruns

    space = {"params": {"train.lr": {"type": "log-float", "low": 1e-3, "high": 1e-2}}}
    settings = _settings(
        tmp_path, space, trials=1, recipe={"train": {**RECIPE["train"], "epochs": 1}}
    )
    study = tune(settings)
    reruns = plan_reruns(study, tmp_path / "paired", [5], threads=1, base_dir=None)
    run_reruns(reruns)
    finished = (reruns[0].folder / "results.json").stat().st_mtime_ns
    run_reruns(plan_reruns(study, tmp_path / "paired", [5], threads=2, base_dir=None))
    assert (reruns[0].folder / "results.json").stat().st_mtime_ns == finished  # kept
    changed = plan_reruns(study, tmp_path / "paired", [5], 1, None, ["train.epochs=2"])
    with pytest.raises(TuneError, match="holds a finished run of another recipe"):
        run_reruns(changed)
    assert (reruns[0].folder / "results.json").stat().st_mtime_ns == finished


def test_reruns_on_two_processes_run_every_seed_once_and_keep_finished_ones(tmp_path):
    from eclsr.tune.paired import plan_reruns, run_reruns

    space = {"params": {"train.lr": {"type": "log-float", "low": 1e-3, "high": 1e-2}}}
    settings = _settings(
        tmp_path, space, trials=1, recipe={"train": {**RECIPE["train"], "epochs": 1}}
    )
    study = tune(settings)
    reruns = plan_reruns(study, tmp_path / "paired", [5, 6, 7], threads=1, base_dir=None)
    run_reruns(reruns[:1], workers=1)  # one finished before: the two processes keep it
    kept = (reruns[0].folder / "results.json").stat().st_mtime_ns
    run_reruns(reruns, workers=2)
    for rerun, seed in zip(reruns, (5, 6, 7), strict=True):
        results = json.loads((rerun.folder / "results.json").read_text())
        assert results["seed"] == seed and results["recipe"] == "tiny-best"
    assert (reruns[0].folder / "results.json").stat().st_mtime_ns == kept
    # The same seed gives the same run in a spawned process as here (its recipe travels whole).
    alone = plan_reruns(study, tmp_path / "alone", [6], threads=1, base_dir=None)
    run_reruns(alone, workers=1)
    here = json.loads((alone[0].folder / "results.json").read_text())["test"]
    there = json.loads((reruns[1].folder / "results.json").read_text())["test"]
    assert here == there


def test_the_example_toys_space_fits_ecl_sr_and_its_shared_part_fits_sasrec():
    from eclsr.recipe.load import recipe_data
    from eclsr.tune.space import restrict

    root = Path(__file__).resolve().parents[1]
    space = read_space(root / "examples" / "tune" / "ecl-sr-toys.toml")
    for name in ("ecl-sr-code", "sasrec-code"):
        file = root / "recipes" / name / "toys.toml"
        data = recipe_data(file)
        recipe = validate_recipe(data, str(file), file.parent)
        shared, dropped = restrict(space, recipe)
        check_space(shared, data, recipe, validate_recipe)
        assert bool(dropped) == (name == "sasrec-code")


def test_sigterm_stops_the_study_with_exit_130_and_the_running_trial_is_lost(tmp_path):
    (tmp_path / "r.toml").write_text(
        RECIPE_TOML.replace("epochs = 2", "epochs = 200\npatience = 200")
    )
    (tmp_path / "s.toml").write_text(SPACE_TOML)
    out = tmp_path / "o"
    argv = [sys.executable, "-m", "eclsr", "tune", str(tmp_path / "r.toml"), "--space",
            str(tmp_path / "s.toml"), "--trials", "2", "--out", str(out), "--study", "r"]  # fmt: skip
    env = {**os.environ, "ECLSR_CACHE_DIR": str(tmp_path / "cache")}
    study = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    url = f"sqlite:///{out.resolve() / 'study.db'}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not _reported(url):
        time.sleep(0.2)
        assert study.poll() is None, study.stderr.read()[-2000:]
    study.send_signal(signal.SIGTERM)
    _, err = study.communicate(timeout=120)
    assert study.returncode == 130 and "Rerun the same `eclsr tune` command" in err
    (trial,) = optuna.load_study(study_name="r", storage=url).get_trials()
    assert trial.state.name == "FAIL" and not counts(trial)


def _reported(url: str) -> bool:
    try:
        trials = optuna.load_study(study_name="r", storage=url).get_trials(deepcopy=False)
    except Exception:  # not created yet
        return False
    return bool(trials and trials[0].intermediate_values)


def test_the_sampler_is_seeded_the_same_seed_draws_the_same_values(tmp_path):
    space = {"params": {"train.lr": {"type": "log-float", "low": 1e-4, "high": 1e-2}}}
    recipe = {"train": {**RECIPE["train"], "epochs": 1}}
    draws = []
    for folder in ("a", "b"):
        settings = _settings(tmp_path / folder, space, trials=2, seed=5, recipe=recipe)
        draws.append([t.params for t in tune(settings).get_trials()])
    assert draws[0] == draws[1] and draws[0][0] != draws[0][1]
