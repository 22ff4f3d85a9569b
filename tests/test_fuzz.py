"""Fuzz the CLI with malformed recipes, overrides and data files: exit 0 or 2, never a traceback.

Bounded: ``ECLSR_FUZZ_EXAMPLES`` (default 60) examples per test, derandomised so CI is stable;
set ``ECLSR_FUZZ_RANDOM=1`` to explore with fresh random inputs.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from eclsr.cli.main import main  # noqa: E402

EXAMPLES = int(os.environ.get("ECLSR_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("ECLSR_FUZZ_RANDOM"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)

BASE = {
    "seed": 1,
    "name": "fuzz",
    "data": {"dataset": "synthetic", "max_len": 6, "synthetic_users": 30, "synthetic_items": 12},
    "encoder": {"name": "sasrec", "hidden": 8, "layers": 1, "heads": 1, "inner_size": 8},
    "heads": [
        {"name": "next_item"},
        {"name": "infonce", "weight": 0.1, "pooling_k": 2, "view": {"name": "dropout"}},
    ],
    "train": {
        "epochs": 1,
        "batch_size": 16,
        "patience": 1,
        "monitor": "valid.recall@10",
        "device": "cpu",
    },
    "eval": {"ks": [5, 10]},
}
FIELDS = [
    ("seed",),
    ("name",),
    ("description",),
    ("plugins",),
    ("data",),
    ("data", "dataset"),
    ("data", "max_len"),
    ("data", "reader"),
    ("data", "k_core"),
    ("data", "columns"),
    ("data", "time_split"),
    ("encoder",),
    ("encoder", "name"),
    ("encoder", "hidden"),
    ("encoder", "dropout"),
    ("heads",),
    ("heads", 0),
    ("heads", 0, "name"),
    ("heads", 1, "weight"),
    ("heads", 1, "temperature"),
    ("heads", 1, "view"),
    ("heads", 1, "view", "name"),
    ("train",),
    ("train", "epochs"),
    ("train", "lr"),
    ("train", "monitor"),
    ("train", "schedule"),
    ("train", "batch_size"),
    ("eval", "ks"),
    ("eval", "ties"),
    ("bogus",),
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
known_keys = st.sampled_from(
    ["seed", "name", "data", "encoder", "heads", "train", "eval", "plugins", "description"]
)


def cli(*argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse's --help / --version
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue(), err.getvalue()


def assert_clean(code: int, err: str, allowed: tuple[int, ...] = (0, 2)) -> None:
    assert code in allowed, (code, err)
    assert "Traceback" not in err, err
    if code == 2:
        assert err.strip().startswith("error:"), err


def fresh_dir(root: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=root))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def check_recipe_file(file: Path, *overrides: str) -> None:
    """validate exits 0/2 cleanly; a rejected recipe makes `run` exit 2 and create no run directory."""
    sets = [arg for o in overrides for arg in ("--set", o)]
    code, _, err = cli("validate", str(file), *sets)
    assert_clean(code, err)
    if code == 2:
        out_dir = file.parent / "run-out"
        code, _, err = cli("run", str(file), *sets, "--out", str(out_dir), "--no-progress")
        assert_clean(code, err, (2,))
        assert not out_dir.exists(), "a rejected recipe left a run directory behind"


def set_path(recipe: dict, path: tuple, value: object) -> dict:
    node = recipe
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return recipe


def base() -> dict:
    return yaml.safe_load(yaml.safe_dump(BASE))


@FUZZ
@given(recipe=st.dictionaries(st.one_of(known_keys, st.text(max_size=10)), values, max_size=6))
def test_random_recipe_dicts(root, recipe):
    file = fresh_dir(root) / "recipe.yaml"
    file.write_text(yaml.safe_dump(recipe, allow_unicode=True))
    check_recipe_file(file)


@FUZZ
@given(path=st.sampled_from(FIELDS), value=values)
def test_known_fields_with_random_values(root, path, value):
    file = fresh_dir(root) / "recipe.yaml"
    file.write_text(yaml.safe_dump(set_path(base(), path, value), allow_unicode=True))
    code, _, err = cli("validate", str(file))
    assert_clean(code, err)
    if code == 2:
        check_recipe_file(file)


@FUZZ
@given(
    where=st.sampled_from(
        [
            ("encoder", "name"),
            ("heads", 0, "name"),
            ("heads", 1, "view", "name"),
            ("train", "schedule", "name"),
        ]
    ),
    name=st.text(min_size=1, max_size=15).filter(
        lambda s: s not in {"sasrec", "next_item", "dropout", "joint"}
    ),
)
def test_random_component_names_are_rejected(root, where, name):
    recipe = base()
    if where[0] == "train":
        recipe["train"]["schedule"] = {}
    file = fresh_dir(root) / "recipe.yaml"
    file.write_text(yaml.safe_dump(set_path(recipe, where, name), allow_unicode=True))
    code, _, err = cli("validate", str(file))
    assert_clean(code, err, (0, 2))
    if code == 0:  # a name that happens to be registered elsewhere in the slot's union
        return
    assert ".".join(str(p) for p in where[:2]) in err.replace("[", ".").replace("]", "")


@FUZZ
@given(
    overrides=st.lists(
        st.one_of(
            st.text(max_size=30),
            st.builds(
                lambda k, v: f"{k}={v}",
                st.sampled_from(
                    [
                        "seed",
                        "train.lr",
                        "heads[1].weight",
                        "heads[9].x",
                        "eval.ks",
                        "data",
                        "encoder.name",
                        "a.b[0].c",
                        "heads",
                        "[0]",
                        "",
                    ]
                ),
                st.text(max_size=20),
            ),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_random_overrides(root, overrides):
    file = fresh_dir(root) / "recipe.yaml"
    file.write_text(yaml.safe_dump(base()))
    check_recipe_file(file, *overrides)


@FUZZ
@given(
    content=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)),
    suffix=st.sampled_from([".toml", ".yaml", ".yml", ".json", ""]),
)
def test_random_recipe_bytes(root, content, suffix):
    file = fresh_dir(root) / f"recipe{suffix}"
    file.write_bytes(content)
    check_recipe_file(file)


token = st.one_of(
    st.integers(min_value=-3, max_value=60).map(str),
    st.sampled_from(["99999999999999999999999", "-0", "1e5", "nan", "1.5", "é", "::", "\x00", "|"]),
    st.text(alphabet="abc,;\t \"'\\", max_size=4),
)
sequence_lines = st.lists(st.lists(token, max_size=12).map(" ".join), max_size=25)
csv_lines = st.lists(st.lists(token, min_size=1, max_size=5).map(",".join), max_size=25)


@FUZZ
@given(
    lines=st.one_of(sequence_lines, csv_lines),
    suffix=st.sampled_from([".txt", ".csv", ".tsv", ".inter", ".dat", ".seq", ".pairs"]),
    header=st.sampled_from(
        ["", "user_id,item_id,timestamp\n", "userId,movieId,rating,timestamp\n"]
    ),
)
def test_random_data_files_stats(root, lines, suffix, header):
    file = fresh_dir(root) / f"data{suffix}"
    file.write_text(header + "\n".join(lines) + "\n")
    code, _, err = cli("data", "stats", str(file), "--no-cache")
    assert_clean(code, err)


@FUZZ
@given(
    content=st.binary(max_size=300),
    suffix=st.sampled_from([".txt", ".csv", ".inter", ".dat", ".parquet"]),
    fmt=st.sampled_from(
        [
            [],
            ["--format", "sequence"],
            ["--format", "pairs"],
            ["--format", "csv"],
            ["--format", "nonsense"],
        ]
    ),
)
def test_random_data_bytes_stats(root, content, suffix, fmt):
    file = fresh_dir(root) / f"data{suffix}"
    file.write_bytes(content)
    code, _, err = cli("data", "stats", str(file), "--no-cache", "--k-core", "0", *fmt)
    assert_clean(code, err)


SAFE_COMMANDS = [
    ["validate"],
    ["plugins"],
    ["schema"],
    ["recommend"],
    ["evaluate"],
    ["export"],
    ["report"],
    ["compare"],
    ["data", "stats"],
    ["data", "list"],
    ["data"],
    [],
]
FLAGS = [
    "--set",
    "--plugin",
    "--json",
    "--out",
    "--history",
    "--input",
    "-k",
    "--metric",
    "--split",
    "--alpha",
    "--plots",
    "--exclude-seen",
    "--device",
    "--format",
    "--k-core",
    "--debug-not",
    "x=1",
    "recipes/quickstart.toml",
]


@FUZZ
@given(
    command=st.sampled_from(SAFE_COMMANDS),
    args=st.lists(st.one_of(st.sampled_from(FLAGS), st.text(max_size=12)), max_size=5),
)
def test_random_command_lines(root, command, args):
    if command[:1] == ["schema"] or command[:1] == ["plugins"]:
        args = [a for a in args if a != "--json"]  # large outputs, nothing to fuzz there
    with contextlib.chdir(fresh_dir(root)):
        code, _, err = cli(*command, *args)
    assert_clean(code, err)


@settings(FUZZ, max_examples=max(5, EXAMPLES // 2))
@given(
    lines=sequence_lines,
    k_core=st.sampled_from([0, 2, 5]),
    short=st.sampled_from(["error", "drop"]),
)
def test_run_on_random_data_never_leaves_results_behind(root, lines, k_core, short):
    folder = fresh_dir(root)
    data = folder / "data.txt"
    data.write_text("\n".join(lines) + "\n")
    recipe = base()
    recipe["data"] = {
        "dataset": str(data),
        "max_len": 6,
        "k_core": k_core,
        "short_sequences": short,
        "cache": False,
    }
    file = folder / "recipe.yaml"
    file.write_text(yaml.safe_dump(recipe))
    out_dir = folder / "run"
    code, _, err = cli("run", str(file), "--out", str(out_dir), "--no-progress")
    assert_clean(code, err)
    if code == 2:
        assert not (out_dir / "results.json").exists()
    else:
        assert (out_dir / "results.json").is_file()


# --------------------------------------------------------------------------- hand-written cases


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("empty.toml", ""),
        ("list.yaml", "- 1\n- 2\n"),
        ("scalar.yaml", "42\n"),
        ("python-tag.yaml", "seed: !!python/object/apply:os.system ['touch {tmp}/pwned']\n"),
        ("dup.toml", "seed = 1\nseed = 2\n"),
        ("date.yaml", "seed: 2020-01-01\nencoder: {name: sasrec}\nheads: [{name: next_item}]\n"),
        ("int-key.yaml", "1: 2\nencoder: {name: sasrec}\nheads: [{name: next_item}]\n"),
        ("no-heads.toml", 'encoder = { name = "sasrec" }\nheads = []\n'),
        (
            "nan.toml",
            'encoder = { name = "sasrec" }\n[[heads]]\nname = "next_item"\nweight = nan\n',
        ),
        (
            "inf-lr.toml",
            'encoder = { name = "sasrec" }\n[[heads]]\nname = "next_item"\n[train]\nlr = inf\n',
        ),
        (
            "plugin-missing.toml",
            'plugins = ["nowhere.py"]\nencoder = { name = "sasrec" }\n[[heads]]\nname = "next_item"\n',
        ),
        (
            "plugins-str.toml",
            'plugins = "x"\nencoder = { name = "sasrec" }\n[[heads]]\nname = "next_item"\n',
        ),
        (
            "plugins-int.toml",
            "plugins = 5\n",
        ),
        (
            "plugins-bool.yaml",
            "plugins: true\n",
        ),
        (
            "deep.toml",
            "a = " + "[" * 3000 + "]" * 3000 + "\n",
        ),
        (
            "deep.yaml",
            "a: " + "[" * 3000 + "]" * 3000 + "\n",
        ),
    ],
)
def test_hand_written_bad_recipes(tmp_path, name, text):
    file = tmp_path / name
    file.write_text(text.replace("{tmp}", str(tmp_path)))
    check_recipe_file(file)
    assert not (tmp_path / "pwned").exists()


def test_run_with_missing_data_leaves_no_directory(tmp_path):
    recipe = base()
    recipe["data"] = {"dataset": str(tmp_path / "missing.txt")}
    file = tmp_path / "recipe.yaml"
    file.write_text(yaml.safe_dump(recipe))
    code, _, err = cli("run", str(file), "--out", str(tmp_path / "run"), "--no-progress")
    assert_clean(code, err, (2,))
    assert not (tmp_path / "run").exists()
