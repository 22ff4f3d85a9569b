"""The same interactions as a sequence file, a CSV and a RecBole .inter give identical results."""

from __future__ import annotations

from pathlib import Path

import pytest

from eclsr.data.synthetic import generate
from eclsr.engine.train import run
from eclsr.recipe.load import validate_recipe


def _write_formats(tmp: Path) -> dict[str, Path]:
    data = generate(num_users=120, num_items=40, seed=5)
    seq, csv, inter = tmp / "log.txt", tmp / "log.csv", tmp / "log.inter"
    seq_lines, csv_lines, inter_lines = (
        [],
        ["user,item,timestamp"],
        ["user_id:token\titem_id:token\ttimestamp:float"],
    )
    for user in range(data.num_users):
        items = data.sequence(user).tolist()
        seq_lines.append(" ".join(map(str, [user + 1, *items])))
        for t, item in enumerate(items):
            csv_lines.append(f"{user + 1},{item},{1000 + t}")
            inter_lines.append(f"{user + 1}\t{item}\t{1000 + t}")
    seq.write_text("\n".join(seq_lines) + "\n")
    csv.write_text("\n".join(csv_lines) + "\n")
    inter.write_text("\n".join(inter_lines) + "\n")
    return {"sequence": seq, "csv": csv, "inter": inter}


def _recipe(path: Path, tmp: Path, **data: object):
    return validate_recipe(
        {
            "seed": 1,
            "data": {"dataset": str(path), "max_len": 10, "cache_dir": str(tmp / "cache"), **data},
            "encoder": {"name": "sasrec", "hidden": 16, "layers": 1, "heads": 1},
            "heads": [{"name": "next_item"}, {"name": "infonce", "weight": 0.1, "pooling_k": 2}],
            "train": {"epochs": 2, "batch_size": 32, "monitor": "valid.ndcg@10"},
        }
    )


def test_three_formats_same_results(tmp_path):
    files = _write_formats(tmp_path)
    results = {
        name: run(_recipe(path, tmp_path), progress=False).results for name, path in files.items()
    }
    reference = results["sequence"]
    for name, result in results.items():
        assert result["test"] == reference["test"], name
        assert result["valid"] == reference["valid"], name
    assert results["csv"]["protocol"]["preprocessing"]["reader"]["name"] == "csv"


def test_time_split_trains_and_is_recorded(tmp_path):
    files = _write_formats(tmp_path)
    result = run(_recipe(files["csv"], tmp_path, split="time"), progress=False).results
    assert result["protocol"]["split"].startswith("time")
    assert 0.0 <= result["test"]["ndcg@10"] <= 1.0


@pytest.mark.parametrize("which", ["valid", "test"])
def test_time_split_windows_point_at_the_first_item_after_each_cut(which):
    import numpy as np

    from eclsr.data.sequences import from_sequences
    from eclsr.data.splits import TimeSplit

    data = from_sequences([[1, 2, 3, 4, 5, 6], [7, 8, 9]])
    data.split_points = np.array([[3, 5], [2, 3]])  # user 1 has no test item after its second cut
    windows = TimeSplit(data, max_len=2).evaluation(which)
    if which == "valid":
        assert windows.target.tolist() == [4, 9] and windows.length.tolist() == [2, 2]
    else:
        assert windows.target.tolist() == [6] and windows.users.tolist() == [0]
