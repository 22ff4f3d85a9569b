from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from eclsr.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def test_validate_ok(capsys):
    assert main(["validate", str(ROOT / "recipes" / "quickstart.toml")]) == 0
    assert "valid" in capsys.readouterr().out


def test_validate_bad_recipe_prints_every_error_without_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'encoder = { name = "sasrc" }\n'
        '[[heads]]\nname = "next_item"\nbogus = 1\n'
        '[[heads]]\nname = "infonce"\ntemperature = -1\n'
        '[[heads]]\nname = "rid"\naugmentation = { name = "dropout" }\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "eclsr", "validate", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    for fragment in (
        "encoder.name",
        "heads[0].bogus",
        "heads[1].temperature",
        "heads[2].augmentation.name",
        "Valid choices",
        str(bad),
    ):
        assert fragment in proc.stderr, fragment


def test_plugins_json(capsys):
    assert main(["plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    have = {(r["kind"], r["name"]) for r in rows}
    expected = {
        ("encoder", "sasrec"),
        ("encoder", "bert4rec"),
        ("encoder", "gru4rec"),
        ("augmentation", "dropout"),
        ("augmentation", "perturb"),
        ("augmentation", "normalize"),
        ("augmentation", "masked_substitution"),
        ("augmentation", "random_substitution"),
        ("augmentation", "insert"),
        ("augmentation", "delete"),
        ("augmentation", "crop"),
        ("augmentation", "reorder"),
        ("head", "next_item"),
        ("head", "infonce"),
        ("head", "rid"),
        ("head", "generator"),
        ("head", "aug_prediction"),
    }
    assert expected <= have
    intensity = {r["name"]: r["intensity"] for r in rows if r["kind"] == "augmentation"}
    assert intensity["dropout"] == "mild" and intensity["crop"] == "invasive"
    assert all(r["plugin"] for r in rows)


def test_schema_is_json_with_discriminated_heads(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "heads" in schema["properties"]
    assert "discriminator" in json.dumps(schema)


@pytest.mark.parametrize(
    "argv",
    [["run"], ["frobnicate"], ["validate", "/no/such/recipe.toml"], ["run", "x.toml", "--bogus"]],
)
def test_bad_cli_arguments_exit_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


def test_run_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    code = main(
        [
            "run",
            str(ROOT / "recipes" / "quickstart.toml"),
            "--out",
            str(out),
            "--set",
            "train.epochs=1",
        ]
    )
    assert code == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "user data"


def test_validate_says_head_or_heads(tmp_path, capsys):
    recipe = tmp_path / "one.toml"
    recipe.write_text(
        'data = { dataset = "synthetic" }\nencoder = { name = "sasrec" }\n[[heads]]\nname = "next_item"\n'
    )
    assert main(["validate", str(recipe)]) == 0
    assert "(1 head," in " ".join(capsys.readouterr().out.split())


def test_a_closed_pipe_ends_quietly():
    import subprocess
    import sys

    code = "from eclsr.cli import main; raise SystemExit(main(['plugins', '--json']))"
    proc = subprocess.run(
        f'{sys.executable} -c "{code}" | head -c 10', shell=True, capture_output=True, text=True
    )
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


def test_rid_over_an_augmentation_without_positional_labels_fails_validation(tmp_path, capsys):
    recipe = tmp_path / "rid.toml"
    recipe.write_text(
        'data = { dataset = "synthetic" }\nencoder = { name = "sasrec" }\n'
        '[[heads]]\nname = "next_item"\n'
        '[[heads]]\nname = "rid"\naugmentation = { name = "crop" }\n'
    )
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "heads[1].augmentation" in err and "positional_labels" in err
