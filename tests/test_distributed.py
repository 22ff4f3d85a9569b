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
device = "cpu"  # gloo on the CPU, also on a machine with a GPU
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


def _machine(monkeypatch, gpus: int, local_processes: int, local_rank: int = 0) -> list[int]:
    """Pretend this machine has ``gpus`` GPUs and torchrun started ``local_processes`` here."""
    chosen: list[int] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(local_processes))
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))
    return chosen


def test_each_process_takes_its_own_gpu(monkeypatch):
    from eclsr.engine.distributed import resolve_device

    chosen = _machine(monkeypatch, gpus=2, local_processes=2, local_rank=1)
    assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda", 1)
    assert chosen == [1, 1]
    assert resolve_device("cpu") == torch.device("cpu")


def test_more_processes_than_gpus_train_on_the_cpu_under_auto_and_stop_under_cuda(monkeypatch):
    # Seen on a one-GPU machine: two processes both asked for a GPU of their own and rank 1 died
    # in set_device ("invalid device ordinal").
    from eclsr.engine.distributed import resolve_device
    from eclsr.errors import EclsrError

    chosen = _machine(monkeypatch, gpus=1, local_processes=2)
    with pytest.warns(UserWarning, match="2 processes but 1 GPU"):
        assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(EclsrError, match=r"2 processes on this machine but 1 GPU.*--nproc 1"):
        resolve_device("cuda")
    assert chosen == []


def test_the_process_group_backend_follows_the_recipes_device(monkeypatch):
    import torch.distributed as dist

    from eclsr.engine.distributed import maybe_init_distributed

    _machine(monkeypatch, gpus=1, local_processes=1)
    backends: list[str] = []
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: backends.append(backend))
    monkeypatch.setattr(dist, "get_rank", lambda: 0)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    for device in ("cpu", "auto", "cuda"):
        assert maybe_init_distributed(device) == 0
    # NCCL moves no CPU tensors: a CPU recipe gets gloo even with a GPU on the machine.
    assert backends == ["gloo", "nccl", "nccl"]
