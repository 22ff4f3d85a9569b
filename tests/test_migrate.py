"""Readers are a validated recipe slot, and recipes written for an older eclsr still load."""

from __future__ import annotations

import warnings

import pytest
import yaml

from eclsr import validate_recipe
from eclsr.errors import RecipeError, RecipeMigrationWarning
from eclsr.recipe.migrate import migrate

MINIMAL = {
    "data": {"dataset": "synthetic", "max_len": 8, "synthetic_users": 40, "synthetic_items": 20},
    "encoder": {"name": "sasrec", "hidden": 16, "layers": 1, "heads": 1},
    "heads": [{"name": "next_item"}],
    "train": {"epochs": 1, "batch_size": 16, "device": "cpu"},
}


def with_data(**data) -> dict:
    return {**MINIMAL, "data": {**MINIMAL["data"], **data}}


def test_a_reader_is_validated_like_any_other_slot():
    recipe = validate_recipe(with_data(reader={"name": "csv", "delimiter": ";"}))
    assert recipe.data.reader.name == "csv" and recipe.data.reader.delimiter == ";"
    with pytest.raises(RecipeError) as typo:
        validate_recipe(with_data(reader={"name": "cvs"}))
    (problem,) = typo.value.problems
    assert problem.startswith("data.reader.name") and "Did you mean 'csv'" in problem
    assert "sequence" in problem.split("Valid choices:")[1]
    with pytest.raises(RecipeError) as option:
        validate_recipe(with_data(reader={"name": "csv", "sep": ";"}))
    assert any("sep" in p and p.startswith("data.reader") for p in option.value.problems)


def test_the_old_reader_fields_migrate_to_the_slot_with_a_note():
    old = with_data(format="csv", reader_options={"delimiter": "\t", "header": False})
    with pytest.warns(RecipeMigrationWarning, match="data.reader"):
        recipe = validate_recipe(old)
    assert (recipe.data.reader.name, recipe.data.reader.delimiter) == ("csv", "\t")
    assert old["data"]["format"] == "csv"  # the caller's dict is not modified


def test_the_old_default_reader_fields_migrate_silently():
    migrated, notes = migrate(with_data(format="auto", reader_options={}))
    assert "format" not in migrated["data"] and "reader" not in migrated["data"] and notes == []


def test_eval_batch_size_moves_to_eval_and_log_every_is_dropped():
    old = {**MINIMAL, "train": {**MINIMAL["train"], "eval_batch_size": 64, "log_every": 5}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recipe = validate_recipe(old)
    notes = [str(w.message) for w in caught if w.category is RecipeMigrationWarning]
    assert any("eval.batch_size" in n for n in notes) and any("log_every" in n for n in notes)
    assert recipe.eval.batch_size == 64 and "log_every" not in recipe.train.model_dump()


def test_a_run_started_by_an_older_eclsr_resumes(tmp_path):
    from eclsr import run

    out = tmp_path / "run"
    run(validate_recipe(MINIMAL), out, progress=False)
    saved = yaml.safe_load((out / "recipe.yaml").read_text())
    # What an older eclsr wrote: the reader as format/reader_options, eval_batch_size in train.
    saved["data"].pop("reader")
    saved["data"] |= {"format": "auto", "reader_options": {}}
    saved["train"] |= {"eval_batch_size": saved["eval"].pop("batch_size"), "log_every": 0}
    (out / "recipe.yaml").write_text(yaml.safe_dump(saved))
    more = validate_recipe({**MINIMAL, "train": {**MINIMAL["train"], "epochs": 2}})
    with pytest.raises(Exception, match="different recipe"):
        run(more, out, resume=True, progress=False)  # a real difference is still refused
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RecipeMigrationWarning)
        result = run(validate_recipe(MINIMAL), out, resume=True, progress=False)
    assert result.results["epochs_run"] == 1
