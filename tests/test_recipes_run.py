"""Every recipe under recipes/ trains for one epoch on tiny synthetic data (issue: zero-edit catalogue)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eclsr.data.synthetic import generate
from eclsr.engine.train import run
from eclsr.recipe.load import load_recipe

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").rglob("*.toml"))


@pytest.fixture(scope="module")
def tiny_data():
    return generate(num_users=64, num_items=40, seed=1, mean_extra_length=4.0)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_recipe_runs_one_epoch(path, tiny_data):
    recipe = load_recipe(path, ["train.epochs=1", "train.batch_size=32", "eval.batch_size=64"])
    result = run(recipe, dataset=tiny_data, progress=False).results
    assert result["epochs_run"] == (0 if recipe.train.epochs == 0 else 1)
    assert 0.0 <= result["test"]["ndcg@10"] <= 1.0
