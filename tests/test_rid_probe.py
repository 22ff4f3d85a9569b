"""tools/rid_probe.py: the RID head's loss per batch beside the best constant prediction."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "rid_probe.py"


@pytest.fixture(scope="module")
def probe():
    spec = importlib.util.spec_from_file_location("rid_probe", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules["rid_probe"] = module
    spec.loader.exec_module(module)
    return module


def test_best_constant_is_the_mean_rate(probe):
    # one rate: the entropy of that rate; a mixture: the constant q = mean rate, scored per batch
    assert probe.best_constant_loss(np.full(5, 0.2)) == pytest.approx(
        -(0.2 * math.log(0.2) + 0.8 * math.log(0.8)), abs=1e-3
    )
    rates = np.array([1.0, 0.5, 0.2, 0.2])
    q = rates.mean()
    expected = np.mean(-(rates * np.log(q) + (1 - rates) * np.log(1 - q)))
    assert probe.best_constant_loss(rates) == pytest.approx(expected, abs=1e-3)


def test_the_probe_records_rid_batches_of_a_tiny_training(probe, tmp_path, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        """
data = { dataset = "synthetic", max_len = 8, synthetic_users = 96, synthetic_items = 30 }
encoder = { name = "sasrec", hidden = 16, layers = 1, heads = 1, inner_size = 32 }
[[heads]]
name = "next_item"
[[heads]]
name = "generator"
weight = 0.1
encoder = { name = "bert4rec", hidden = 16, layers = 1, heads = 1, inner_size = 32 }
[[heads]]
name = "rid"
weight = 0.1
[train]
batch_size = 32
device = "cpu"
threads = 1
""",
        encoding="utf-8",
    )
    args = ["--block", "2", "--", "bench", str(recipe), "--in-process", "--max-batches", "3"]
    assert probe.main([*args, "--warmup", "1", "--no-eval"]) == 0
    out = capsys.readouterr().out
    assert "batches; replaced share per batch" in out
    assert "batches 0-2: RID loss" in out and "best constant" in out
    import torch.nn.functional as F  # noqa: N812

    import eclsr.plugins.heads.rid as rid

    assert rid.F is F  # left as found
