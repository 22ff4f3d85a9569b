"""Readers, preprocessing, cache, catalogue and the `eclsr data` commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eclsr import DataError
from eclsr.data import Interactions, from_dataframe, load_dataset, load_file, prepare, stats
from eclsr.data.config import DataConfig
from eclsr.data.loader import read_sequence_file

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# user → [(item, timestamp)] in chronological order; every user has >= 3 items.
EVENTS = {
    "1": [("10", 100), ("20", 200), ("30", 300), ("10", 400)],
    "2": [("20", 150), ("30", 250), ("40", 350)],
    "3": [("40", 50), ("10", 60), ("20", 70), ("30", 80), ("50", 90)],
}


def _rows() -> list[tuple[str, str, int]]:
    rows = [(u, i, t) for u, seq in EVENTS.items() for i, t in seq]
    return rows[::-1]  # reversed: the readers must restore the time order


def write_all_formats(folder: Path) -> dict[str, Path]:
    """The same interactions as a sequence file, pair file, CSV, TSV, .inter and ratings.dat."""
    rows = _rows()
    files = {
        "seq.txt": "".join(f"{u} {' '.join(i for i, _ in s)}\n" for u, s in EVENTS.items()),
        "pairs.txt": "".join(f"{u} {i}\n" for u, s in EVENTS.items() for i, _ in s),
        "log.csv": "userId,movieId,rating,timestamp\n"
        + "".join(f"{u},{i},4.0,{t}\n" for u, i, t in rows),
        "log.tsv": "rating\tuser\titem\ttime\n"
        + "".join(f"4\t{u}\t{i}\t{t}\n" for u, i, t in rows),
        "log.inter": "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        + "".join(f"{u}\t{i}\t4\t{t}\n" for u, i, t in rows),
        "ratings.dat": "".join(f"{u}::{i}::4::{t}\n" for u, i, t in rows),
    }
    for name, text in files.items():
        (folder / name).write_text(text)
    return {name: folder / name for name in files}


def cfg(path: Path | str, tmp_path: Path, **options: object) -> DataConfig:
    return DataConfig(
        dataset=str(path),
        k_core=options.pop("k_core", 0),
        cache_dir=str(tmp_path / "cache"),
        **options,
    )


def inter(
    users: list[str], items: list[str], times: list[float] | None = None, **kw: object
) -> Interactions:
    return Interactions(
        np.array(users),
        np.array(items),
        None if times is None else np.array(times, dtype=float),
        lines=np.arange(1, len(users) + 1),
        source="mem.csv",
        **kw,
    )


def test_every_format_gives_identical_arrays(tmp_path: Path) -> None:
    files = write_all_formats(tmp_path)
    results = {name: load_dataset(cfg(path, tmp_path)) for name, path in files.items()}
    reference = results["seq.txt"]
    np.testing.assert_array_equal(reference.items, [1, 2, 3, 1, 2, 3, 4, 4, 1, 2, 3, 5])
    np.testing.assert_array_equal(reference.offsets, [0, 4, 7, 12])
    assert reference.item_vocab == ["", "10", "20", "30", "40", "50"]
    assert reference.user_vocab == ["1", "2", "3"]
    for name, data in results.items():
        np.testing.assert_array_equal(data.items, reference.items, err_msg=name)
        np.testing.assert_array_equal(data.offsets, reference.offsets, err_msg=name)
        assert (data.item_vocab, data.user_vocab, data.num_items) == (
            reference.item_vocab,
            reference.user_vocab,
            5,
        ), name
    assert results["pairs.txt"].protocol["reader"]["name"] == "pairs"
    assert results["log.tsv"].protocol["reader"]["name"] == "csv"
    assert results["ratings.dat"].protocol["reader"]["name"] == "movielens_dat"


def test_ids_sorted_numerically_not_as_text(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    path.write_text("7 100 9 20\n3 9 9 100\n")
    data = load_file(path, cfg(path, tmp_path))
    assert data.user_vocab == ["3", "7"]
    assert data.item_vocab == ["", "9", "20", "100"]
    np.testing.assert_array_equal(data.items, [1, 1, 3, 3, 1, 2])


def test_k_core_runs_to_a_fixed_point() -> None:
    # Item c has 1 row → dropped; then user B has 1 row → dropped; then item b has 1 row → dropped;
    # then user A keeps only 'a' twice... with k=2 the core is users A, C on item a.
    users = ["A", "A", "A", "B", "B", "C", "C"]
    items = ["a", "a", "b", "b", "c", "a", "a"]
    data = prepare(inter(users, items, chronological=True), DataConfig(k_core=2, min_length=1))
    assert data.user_vocab == ["A", "C"] and data.item_vocab == ["", "a"]
    assert data.protocol["counts"]["k-core"] == 3
    np.testing.assert_array_equal(data.lengths, [2, 2])


def test_tie_break_file_order_and_item_id() -> None:
    users, items, times = ["u"] * 4, ["9", "5", "7", "1"], [2.0, 1.0, 1.0, 0.0]
    by_file = prepare(inter(users, items, times), DataConfig(k_core=0))
    by_item = prepare(inter(users, items, times), DataConfig(k_core=0, tie_break="item_id"))
    raw = lambda d: [d.item_vocab[i] for i in d.items]  # noqa: E731
    assert raw(by_file) == ["1", "5", "7", "9"]  # 5 before 7: file order on the tie
    items[1], items[2] = "7", "5"
    assert raw(prepare(inter(users, items, times), DataConfig(k_core=0))) == ["1", "7", "5", "9"]
    assert raw(
        prepare(inter(users, items, times), DataConfig(k_core=0, tie_break="item_id"))
    ) == raw(by_item)


@pytest.mark.parametrize(
    ("mode", "expected", "dropped"),
    [
        ("all", ["a", "b", "a", "c", "a"], 0),
        ("first", ["a", "b", "c"], 2),
        ("last", ["b", "c", "a"], 2),
    ],
)
def test_dedupe(mode: str, expected: list[str], dropped: int) -> None:
    data = prepare(
        inter(["u"] * 5, ["a", "b", "a", "c", "a"], chronological=True),
        DataConfig(k_core=0, dedupe=mode),
    )
    assert [data.item_vocab[i] for i in data.items] == expected
    assert data.protocol["counts"].get("duplicates", 0) == dropped


def test_rating_threshold_and_time_window_are_counted() -> None:
    rows = inter(["u"] * 5, list("abcde"), [1, 2, 3, 4, 5])
    rows.ratings = np.array([5.0, 1.0, 4.0, 4.0, 3.0])
    data = prepare(rows, DataConfig(k_core=0, rating_threshold=3.5, time_window=(1, 4)))
    assert [data.item_vocab[i] for i in data.items] == ["a", "c", "d"]
    assert data.protocol["counts"] == {
        "rows read": 5,
        "below rating threshold": 2,
        "outside time window": 1,
        "rows kept": 3,
    }


def test_time_split_points() -> None:
    times = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    rows = inter(["a"] * 5 + ["b"] * 5, list("pqrstpqrst"), times)
    data = prepare(rows, DataConfig(k_core=0, split="time", time_split=(0.5, 0.75)))
    cut_valid, cut_test = data.protocol["split"]["cutoffs"]
    assert cut_valid == pytest.approx(5.5) and cut_test == pytest.approx(7.75)
    np.testing.assert_array_equal(data.split_points, [[5, 5], [0, 2]])


def test_short_sequences_error_names_line_or_drops(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    path.write_text("1 1 2 3\n2 1 2\n3 1 2 3\n")
    with pytest.raises(DataError, match=r"s\.txt:2: user '2' has 2 interaction.*min_length = 3"):
        load_file(path, cfg(path, tmp_path))
    data = load_file(path, cfg(path, tmp_path, short_sequences="drop"))
    assert data.user_vocab == ["1", "3"] and data.protocol["counts"]["short sequences"] == 2


@pytest.mark.parametrize(
    ("name", "text", "pattern"),
    [
        ("bad.txt", "1 1 2 3\n2 1 x 3\n", r"bad\.txt:2: column 'item' must be an integer, got 'x'"),
        (
            "bad.txt",
            "1 1 2 3\n\n7\n",
            r"bad\.txt:3: a line needs a user id followed by at least one item",
        ),
        (
            "bad.dat",
            "1::2::3::4\n1::2::3\n",
            r"bad\.dat:2: expected 4 fields .*user::item::rating::timestamp.*got 3",
        ),
        (
            "bad.csv",
            "user,item,timestamp\n1,2,3\n1,2,soon\n",
            r"bad\.csv:3: column 'timestamp' must be a number, got 'soon'",
        ),
        ("bad.csv", "who,what\n1,2\n", r"bad\.csv: no user column in the header \['who', 'what'\]"),
        ("bad.csv", "user,item\n1,\n", r"bad\.csv:2: empty item id"),
        ("bad.xyz", "1 2\n", r"cannot tell the format .*'\.xyz'"),
    ],
)
def test_bad_data_errors_name_file_and_line(
    tmp_path: Path, name: str, text: str, pattern: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataError, match=pattern):
        load_file(path, cfg(path, tmp_path))


def test_option_errors(tmp_path: Path) -> None:
    files = write_all_formats(tmp_path)
    with pytest.raises(DataError, match=r"has no rating column, but data\.rating_threshold"):
        load_file(files["seq.txt"], cfg(files["seq.txt"], tmp_path, rating_threshold=1.0))
    with pytest.raises(
        DataError, match=r"column 'stamp' \(data\.columns\.timestamp\) is not in the header"
    ):
        load_file(files["log.csv"], cfg(files["log.csv"], tmp_path, columns={"timestamp": "stamp"}))
    with pytest.raises(DataError, match=r"no interactions left after preprocessing .*k-core: 12"):
        load_file(files["log.csv"], cfg(files["log.csv"], tmp_path, k_core=5))
    with pytest.raises(DataError, match=r"unknown reader 'cvs'.*Did you mean 'csv'"):
        load_file(files["log.csv"], cfg(files["log.csv"], tmp_path, reader={"name": "cvs"}))
    with pytest.raises(DataError, match=r"reader options do not fit the 'csv' reader"):
        load_file(
            files["log.csv"], cfg(files["log.csv"], tmp_path, reader={"name": "csv", "sep": ";"})
        )


def test_explicit_columns_and_headerless_csv(tmp_path: Path) -> None:
    path = tmp_path / "u.data"
    path.write_text("1\t10\t5\t30\n1\t20\t5\t10\n1\t30\t5\t20\n")
    options = {"delimiter": "\t", "header": False, "names": ["u", "i", "r", "t"]}
    columns = {"user": "u", "item": "i", "timestamp": "t", "rating": "r"}
    data = load_file(path, cfg(path, tmp_path, reader={"name": "csv", **options}, columns=columns))
    assert [data.item_vocab[i] for i in data.items] == ["20", "30", "10"]


def test_cache_hit_and_invalidation(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(
        "user,item,timestamp\n" + "".join(f"{u},{i},{i}\n" for u in (1, 2) for i in (1, 2, 3))
    )
    first = load_file(path, cfg(path, tmp_path))
    again = load_file(path, cfg(path, tmp_path))
    assert not first.from_cache and again.from_cache
    np.testing.assert_array_equal(again.items, first.items)
    assert (
        again.protocol == json.loads(json.dumps(first.protocol))
        and again.item_vocab == first.item_vocab
    )
    assert not load_file(path, cfg(path, tmp_path, dedupe="first")).from_cache  # option changed
    path.write_text(path.read_text() + "3,1,1\n3,2,2\n3,3,3\n")  # file changed
    changed = load_file(path, cfg(path, tmp_path))
    assert (
        not changed.from_cache
        and changed.num_users == 3
        and changed.source_hash != first.source_hash
    )
    assert load_file(path, cfg(path, tmp_path)).from_cache
    assert not load_file(path, cfg(path, tmp_path, cache=False)).from_cache


def test_read_sequence_file_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "tiny.txt"
    path.write_text("1 1 2\n2 3\n")
    data = read_sequence_file(path)
    np.testing.assert_array_equal(data.items, [1, 2, 3])
    np.testing.assert_array_equal(data.offsets, [0, 2, 3])
    assert data.num_items == 3 and data.name == "tiny"


class FakeFrame:
    """The two things from_dataframe uses of a pandas DataFrame."""

    def __init__(self, columns: dict[str, list[object]]) -> None:
        self._columns = columns
        self.columns = list(columns)

    def __getitem__(self, key: str) -> FakeFrame:
        return type("Col", (), {"to_numpy": lambda _self: np.array(self._columns[key])})()


def test_from_dataframe_matches_files(tmp_path: Path) -> None:
    rows = _rows()
    frame = FakeFrame(
        {
            "user_id": [int(u) for u, _, _ in rows],
            "item_id": [int(i) for _, i, _ in rows],
            "timestamp": [t for *_, t in rows],
        }
    )
    data = from_dataframe(frame, DataConfig(k_core=0))
    reference = read_sequence_file(write_all_formats(tmp_path)["seq.txt"])
    np.testing.assert_array_equal(data.items, reference.items)
    assert data.item_vocab == reference.item_vocab and data.user_vocab == reference.user_vocab


def test_missing_catalogue_file_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"expects the file .*toys\.txt.*eclsr data download toys --data-dir"
    ):
        load_dataset(DataConfig(dataset="toys", data_dir=str(tmp_path)))
    with pytest.raises(DataError, match=r"unknown dataset 'toy'\. Did you mean 'toys'"):
        load_dataset(DataConfig(dataset="toy", data_dir=str(tmp_path)))


def test_catalogue_defaults_yield_to_recipe(tmp_path: Path) -> None:
    (tmp_path / "toys.txt").write_text("".join(f"{u} 1 2 3 4 5\n" for u in range(1, 6)))
    data = load_dataset(
        DataConfig(dataset="toys", data_dir=str(tmp_path), cache_dir=str(tmp_path / "c"))
    )
    assert data.name == "toys" and data.protocol["reader"]["name"] == "sequence"
    with pytest.raises(DataError, match="unknown reader 'nope'"):
        load_dataset(DataConfig(dataset="toys", reader={"name": "nope"}, data_dir=str(tmp_path)))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sports", (35598, 18357, 296337)),
        ("toys", (19412, 11924, 167597)),
        ("ml-latest-small", (610, 3650, 90274)),
    ],
)
def test_table2_statistics(tmp_path: Path, name: str, expected: tuple[int, int, int]) -> None:
    if not SHARED_DATA.is_dir():
        pytest.skip("shared data not present")
    data = load_dataset(
        DataConfig(dataset=name, data_dir=str(SHARED_DATA), cache_dir=str(tmp_path))
    )
    facts = stats(data)
    assert (facts["users"], facts["items"], facts["actions"]) == expected
    assert data.protocol["stats"] == facts and data.protocol["source_sha256"]


def test_cli_data_stats(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from eclsr.cli.main import main

    monkeypatch.setenv("ECLSR_CACHE_DIR", str(tmp_path / "cache"))
    path = write_all_formats(tmp_path)["log.inter"]
    assert main(["data", "stats", str(path), "--k-core", "0", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["stats"]["users"] == 3 and facts["stats"]["actions"] == 12
    assert facts["stats"]["sparsity"] == pytest.approx(1 - 12 / 15)
    assert main(["data", "stats", str(path), "--k-core", "0"]) == 0
    assert "actions" in capsys.readouterr().out
    assert main(["data", "stats", str(tmp_path / "missing.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
