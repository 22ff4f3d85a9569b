"""Crash safety: SIGKILL mid-epoch then resume is bit-identical; corrupt checkpoints fall back."""

from __future__ import annotations

import json
import os
import pickle
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eclsr.engine import rundir
from eclsr.errors import EclsrError

RECIPE = """
seed = 11
data = { dataset = "synthetic", max_len = 20, synthetic_users = 1500, synthetic_items = 300 }
encoder = { name = "sasrec", hidden = 32, layers = 1, heads = 2, inner_size = 64, dropout = 0.3, attn_dropout = 0.3 }
[[heads]]
name = "next_item"
[[heads]]
name = "infonce"
weight = 0.1
pooling_k = 3
[[heads]]
name = "generator"
weight = 0.1
encoder = { name = "bert4rec", layers = 1, heads = 2 }
[[heads]]
name = "rid"
weight = 0.1
[train]
epochs = 4
batch_size = 32
lr = 0.003
monitor = "valid.ndcg@10"
threads = 1
"""


def _cmd(recipe: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "eclsr",
        "run",
        str(recipe),
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


def _env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "ECLSR_CACHE_DIR": str(tmp / "cache")}


def _resume(recipe: Path, out: Path, tmp: Path) -> subprocess.CompletedProcess:
    """Run ``--resume`` on ``out`` and require success."""
    resumed = subprocess.run(
        _cmd(recipe, out, "--resume"), capture_output=True, text=True, env=_env(tmp), timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    return resumed


def _comparable(run_dir: Path) -> dict:
    results = json.loads((run_dir / "results.json").read_text())
    results.pop("seconds")
    results.pop("command")  # the --out folder differs
    results.pop("resumed_with", None)
    return results


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    recipe = tmp / "r.toml"
    recipe.write_text(RECIPE)
    out = tmp / "reference"
    proc = subprocess.run(
        _cmd(recipe, out), capture_output=True, text=True, env=_env(tmp), timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return recipe, out


def test_sigkill_mid_epoch_then_resume_is_bit_identical(reference, tmp_path):
    recipe, ref = reference
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        _cmd(recipe, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(tmp_path)
    )
    deadline = time.time() + 300
    while not (out / "checkpoint-00002.pt").exists():  # two epochs done, the third under way
        assert proc.poll() is None and time.time() < deadline, (
            "training ended before it could be killed"
        )
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "results.json").exists()
    resumed = _resume(recipe, out, tmp_path)
    assert "resuming" in resumed.stderr
    assert _comparable(out) == _comparable(ref)
    # the results still name the command that started the run, and the one that resumed it
    results = json.loads((out / "results.json").read_text())
    started = _cmd(recipe, out)[3:]  # without the interpreter: "run RECIPE --out OUT ..."
    assert results["command"] == shlex.join(["eclsr", *started])
    assert results["resumed_with"] == [shlex.join(["eclsr", *started, "--resume"])]
    # time spent before the kill counts: every checkpoint carries the run's seconds so far
    newest = json.loads((out / "checkpoints.json").read_text())[-1]
    saved = rundir.load_state(out / newest["file"])
    history = json.loads(saved["history"])
    spent = sum(record["train_seconds"] + record["eval_seconds"] for record in history)
    assert saved["command"] == results["command"] and saved["seconds"] >= spent
    assert results["seconds"] >= saved["seconds"]
    assert (out / "metrics.jsonl").read_text().count("\n") == 4


def test_truncated_latest_checkpoint_falls_back_with_warning(reference, tmp_path):
    recipe, ref = reference
    out = tmp_path / "copy"
    out.mkdir()
    for file in ref.iterdir():
        (out / file.name).write_bytes(file.read_bytes())
    latest = out / "checkpoint-00004.pt"
    latest.write_bytes(latest.read_bytes()[:1000])
    resumed = _resume(recipe, out, tmp_path)
    assert "corrupt or truncated" in resumed.stderr
    assert "resuming" in resumed.stderr and "epoch 3" in resumed.stderr
    assert _comparable(out) == _comparable(ref)


def test_resume_with_another_recipe_is_refused(reference, tmp_path):
    recipe, ref = reference
    proc = subprocess.run(
        _cmd(recipe, ref, "--resume", "--set", "train.lr=0.1"),
        capture_output=True,
        text=True,
        env=_env(tmp_path),
    )
    assert (
        proc.returncode == 2
        and "different recipe" in proc.stderr
        and "Traceback" not in proc.stderr
    )


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_that_runs_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "best.pt"
    evil.write_bytes(pickle.dumps({"model": _Exploit(marker)}))
    with pytest.raises(EclsrError, match="cannot be loaded safely"):
        rundir.load_state(evil)
    assert not marker.exists()


def test_existing_run_dir_is_not_overwritten(reference, tmp_path):
    recipe, ref = reference
    before = (ref / "results.json").read_bytes()
    proc = subprocess.run(_cmd(recipe, ref), capture_output=True, text=True, env=_env(tmp_path))
    # --overwrite would delete its results: the advice is another --out or resume (issue 17)
    assert proc.returncode == 2 and "another --out" in proc.stderr
    assert "--overwrite" not in proc.stderr
    assert (ref / "results.json").read_bytes() == before


def test_sigterm_stops_cleanly_and_the_run_resumes_identically(reference, tmp_path):
    recipe, ref = reference
    out = tmp_path / "stopped"
    proc = subprocess.Popen(
        _cmd(recipe, out),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(tmp_path),
    )
    deadline = time.time() + 300
    while not (out / "checkpoint-00001.pt").exists():
        assert proc.poll() is None and time.time() < deadline, (
            "training ended before it could be stopped"
        )
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted during epoch" in err and "--resume" in err and "Traceback" not in err
    _resume(recipe, out, tmp_path)
    assert _comparable(out) == _comparable(ref)
