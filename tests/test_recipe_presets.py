"""The committed recipes are what tools/make_recipes.py writes, and the code presets train on the
authors' per-dataset examples (METHOD.md, "Code data modes")."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
AUTHORS_MODE = {"sports": "sequence", "yelp": "sequence", "toys": "prefixes", "ml-1m": "windows"}


def _make_recipes_module():
    spec = importlib.util.spec_from_file_location(
        "make_recipes", ROOT / "tools" / "make_recipes.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_recipes_are_the_generators_output(tmp_path, monkeypatch):
    module = _make_recipes_module()
    monkeypatch.setattr(module, "ROOT", tmp_path)
    module.main()
    written = sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*.toml"))
    assert len(written) >= 100
    stale = [
        str(p) for p in written if (ROOT / "recipes" / p).read_text() != (tmp_path / p).read_text()
    ]
    assert not stale, f"rerun python tools/make_recipes.py: {stale[:5]}"


@pytest.mark.parametrize("dataset", sorted(AUTHORS_MODE))
def test_code_presets_use_the_authors_examples_and_paper_presets_one_sequence(dataset):
    for path in sorted((ROOT / "recipes").rglob(f"{dataset}.toml")):
        recipe = tomllib.loads(path.read_text())
        if recipe["encoder"]["name"] in ("pop", "bert4rec"):  # no next-item training to shape
            assert recipe["train"]["examples"]["mode"] == "sequence", path
            continue
        code = path.parent.name.endswith("-code")
        expected = AUTHORS_MODE[dataset] if code else "sequence"
        assert recipe["train"]["examples"]["mode"] == expected, path
