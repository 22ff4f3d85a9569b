from __future__ import annotations

from pathlib import Path

import pytest

from eclsr.errors import RecipeError
from eclsr.recipe.load import (
    apply_overrides,
    load_recipe,
    read_recipe_file,
    readable_location,
    validate_recipe,
)

RECIPES = Path(__file__).resolve().parents[1] / "recipes"

MINIMAL = {"encoder": {"name": "sasrec"}, "heads": [{"name": "next_item"}]}


def test_minimal_recipe_fills_defaults():
    recipe = validate_recipe(MINIMAL)
    assert recipe.train.batch_size == 256 and recipe.eval.ks == [5, 10, 20]
    assert recipe.encoder.layers == 2


def test_four_errors_reported_together():
    bad = {
        "encoder": {"name": "sasrc"},
        "heads": [
            {"name": "next_item", "bogus": 1},
            {"name": "infonce", "temperature": -1.0},
            {"name": "rid", "augmentation": {"name": "dropout"}},
        ],
    }
    with pytest.raises(RecipeError) as info:
        validate_recipe(bad, source="bad.toml")
    problems = info.value.problems
    assert len(problems) == 4, problems
    assert problems[0].startswith("encoder.name: unknown name 'sasrc'. Did you mean 'sasrec'?")
    assert "Valid choices:" in problems[0] and "bert4rec" in problems[0]
    assert problems[1].startswith("heads[0].bogus: unknown field")
    assert problems[2].startswith("heads[1].temperature: Input should be greater than 0")
    assert problems[3].startswith("heads[2].augmentation.name: unknown name 'dropout'")
    assert "mild augmentation, which does not belong here" in problems[3]
    assert "masked_substitution" in problems[3]
    assert str(info.value).startswith("bad.toml: 4 problems")


def test_nested_location_strips_union_tags():
    data = {"heads": [{"name": "rid", "augmentation": {"name": "crop", "ratio": 5}}]}
    loc = ("heads", 0, "rid", "augmentation", "crop", "ratio")
    assert readable_location(loc, data) == "heads[0].augmentation.ratio"


def test_monitor_must_use_a_configured_k():
    with pytest.raises(RecipeError, match="eval.ks"):
        validate_recipe({**MINIMAL, "train": {"monitor": "valid.recall@50"}})


def test_missing_service_is_reported():
    recipe = {**MINIMAL, "heads": [{"name": "next_item"}, {"name": "rid"}]}
    with pytest.raises(RecipeError, match="needs a 'generator' head"):
        validate_recipe(recipe)


def test_overrides_typed_and_indexed():
    data = {"train": {"epochs": 300}, "heads": [{"name": "next_item"}, {"name": "infonce"}]}
    out = apply_overrides(
        data,
        ["train.epochs=2", "heads[1].temperature=0.1", "eval.ks=[5, 10]", "heads.0.weight=0.5"],
    )
    assert out["train"]["epochs"] == 2 and out["heads"][1]["temperature"] == 0.1
    assert out["eval"]["ks"] == [5, 10] and out["heads"][0]["weight"] == 0.5
    assert data["train"]["epochs"] == 300  # the input is not mutated


@pytest.mark.parametrize("override", ["train.epochs", "heads[7].weight=1", "=3"])
def test_bad_overrides(override):
    with pytest.raises(RecipeError, match="--set"):
        apply_overrides({"heads": [{}]}, [override])


def test_override_is_validated_like_the_file(tmp_path):
    file = tmp_path / "r.toml"
    file.write_text('encoder = { name = "sasrec" }\n[[heads]]\nname = "next_item"\n')
    with pytest.raises(RecipeError, match="train.epochs"):
        load_recipe(file, ["train.epochs=-1"])


def test_yaml_is_loaded_safely(tmp_path):
    file = tmp_path / "r.yaml"
    file.write_text("encoder: !!python/object/apply:os.system ['echo pwned']\nheads: []\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        read_recipe_file(file)


def test_yaml_and_toml_agree(tmp_path):
    toml = tmp_path / "a.toml"
    toml.write_text(
        'seed = 3\nencoder = { name = "sasrec", hidden = 32 }\n[[heads]]\nname = "next_item"\n'
    )
    yml = tmp_path / "a.yaml"
    yml.write_text("seed: 3\nencoder: {name: sasrec, hidden: 32}\nheads:\n  - name: next_item\n")
    assert load_recipe(toml).model_dump() == load_recipe(yml).model_dump()


@pytest.mark.parametrize("text,match", [("a = [", "not valid TOML"), ("", "heads")])
def test_broken_files(tmp_path, text, match):
    file = tmp_path / "r.toml"
    file.write_text(text)
    with pytest.raises(RecipeError, match=match):
        load_recipe(file)


def test_unknown_suffix(tmp_path):
    file = tmp_path / "r.json"
    file.write_text("{}")
    with pytest.raises(RecipeError, match="unknown recipe format"):
        read_recipe_file(file)


def test_every_recipe_validates():
    files = sorted(RECIPES.rglob("*.toml")) + sorted(RECIPES.rglob("*.yaml"))
    assert files, "no recipes found"
    for file in files:
        load_recipe(file)


def test_every_recipe_starts_with_its_command():
    for file in sorted(RECIPES.rglob("*.toml")):
        first = file.read_text().splitlines()[0]
        assert first.startswith("# eclsr run") or first.startswith("# eclsr sweep"), (
            f"{file}: {first!r}"
        )


def test_infonce_extra_needs_generator_at_validation():
    recipe = {**MINIMAL, "heads": [{"name": "next_item"}, {"name": "infonce", "extra": "pos"}]}
    with pytest.raises(RecipeError, match="needs a 'generator' head"):
        validate_recipe(recipe)
