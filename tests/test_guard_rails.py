"""A non-finite loss stops the run with a message naming the loss term and epoch."""

from __future__ import annotations

import os
import subprocess
import sys

NAN_HEAD = '''
from typing import Literal
import torch
import eclsr

class NanConfig(eclsr.HeadConfig):
    """A head whose loss turns NaN in the second epoch."""
    name: Literal["nan_after_one"] = "nan_after_one"
    def build(self, ctx):
        return NanHead()

class NanHead(eclsr.Head):
    def forward(self, step):
        value = step.hidden.sum() * 0.0
        return value + (float("nan") if step.epoch >= 1 else 0.0)

@eclsr.hookimpl
def eclsr_register_heads(register):
    register(NanConfig)
'''

RECIPE = """
data = { dataset = "synthetic", max_len = 10, synthetic_users = 100, synthetic_items = 30 }
encoder = { name = "sasrec", hidden = 16, layers = 1, heads = 1 }
plugins = ["nan_head.py"]
[[heads]]
name = "next_item"
[[heads]]
name = "nan_after_one"
[train]
epochs = 3
monitor = "valid.ndcg@10"
"""


def test_nan_loss_stops_with_named_term_and_keeps_checkpoint(tmp_path):
    (tmp_path / "nan_head.py").write_text(NAN_HEAD)
    (tmp_path / "r.toml").write_text(RECIPE)
    out = tmp_path / "run"
    env = {**os.environ, "ECLSR_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "eclsr",
            "run",
            str(tmp_path / "r.toml"),
            "--out",
            str(out),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 2
    assert "'nan_after_one' loss became nan at epoch 1" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (out / "best.pt").is_file() and (out / "checkpoint-00001.pt").is_file()
    assert not (out / "results.json").exists()


def test_tensorboard_logging_or_clear_install_hint(tmp_path):
    import importlib.util

    import pytest

    from eclsr.data.synthetic import generate
    from eclsr.engine.train import run
    from eclsr.errors import EclsrError
    from eclsr.recipe.load import validate_recipe

    recipe = validate_recipe(
        {
            "encoder": {"name": "sasrec", "hidden": 16, "layers": 1, "heads": 1},
            "heads": [{"name": "next_item"}],
            "train": {"epochs": 1, "tensorboard": True, "monitor": "valid.ndcg@10"},
        }
    )
    data = generate(num_users=60, num_items=20, seed=0)
    if importlib.util.find_spec("tensorboard") is None:
        with pytest.raises(EclsrError, match=r"pip install 'eclsr\[tensorboard\]'"):
            run(recipe, tmp_path / "run", dataset=data, progress=False)
        assert not (tmp_path / "run").exists()  # nothing written before the error
    else:
        run(recipe, tmp_path / "run", dataset=data, progress=False)
        assert any((tmp_path / "run" / "tb").iterdir())
