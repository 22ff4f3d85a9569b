"""Use a finished run: recommend for raw-id histories, re-score the test split, export the item table.

Inference uses only the UBE, as in the paper: a history's score for item ``i`` is ``h_L · E_i``
(``Encoder.user_vectors`` against ``Encoder.item_vectors``), over items 1..N only — padding and
[MASK] are never recommended. Everything is rebuilt from the run directory: the resolved
``recipe.yaml`` (validated again, so the installed plugins must still provide its components), the
dataset it names (loaded through the data layer, so raw ids map to the same internal ids) and
``best.pt`` (loaded with ``weights_only=True``: nothing in it can execute code).

Unknown raw ids: :meth:`Recommender.recommend` raises by default, naming the id and the history;
``unknown="skip"`` drops such ids with a :class:`UserWarning` instead.
"""

from __future__ import annotations

import io
import json
import shutil
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel

from eclsr.data.sequences import SequenceDataset
from eclsr.engine import rundir
from eclsr.engine.evaluate import require_finite
from eclsr.engine.model import Model
from eclsr.errors import EclsrError, RecipeError

_DATA_CACHE: dict[str, SequenceDataset] = {}


def read_run_file(run_dir: Path, name: str) -> str:
    """Text of ``run_dir/name``; a clear error when the folder is not a (finished) run."""
    if not run_dir.is_dir():
        msg = (
            f"run directory {str(run_dir)!r} does not exist. Pass the --out folder of `eclsr run`."
        )
        raise EclsrError(msg)
    path = run_dir / name
    if not path.is_file():
        msg = f"{str(run_dir)!r} has no {name}: it is not an eclsr run directory, or the run did not finish."
        raise EclsrError(msg)
    return rundir.read_text(path)


def read_results(run_dir: Path, name: str = rundir.RESULTS) -> dict[str, Any]:
    """``results.json`` (or another results file ``name``) of a finished run."""
    path = run_dir / name
    try:
        value = json.loads(read_run_file(run_dir, name))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        msg = f"{str(path)!r} is not valid JSON ({exc}); the run directory is damaged."
        raise EclsrError(msg) from None
    if not isinstance(value, dict) or not isinstance(value.get("test"), dict):
        msg = f"{str(path)!r} does not hold eclsr results (no 'test' metrics)."
        raise EclsrError(msg)
    return value


def load_run_recipe(run_dir: Path, plugin_files: Sequence[str | Path] = ()) -> BaseModel:
    """Validate the run's resolved ``recipe.yaml`` with the plugins installed now.

    The ``plugins = [...]`` files the recipe lists are never imported from here: a run directory
    may come from someone else, and importing a file runs its code. Only the ``plugin_files`` the
    user passes (``--plugin``) are loaded; the error names the listed ones that were not passed.
    """
    from eclsr.recipe.load import parse_yaml, validate_recipe
    from eclsr.registry.manager import load_plugin_file

    for file in plugin_files:
        load_plugin_file(file)
    source = str(run_dir / rundir.RECIPE)
    data = parse_yaml(read_run_file(run_dir, rundir.RECIPE), source)
    if not isinstance(data, dict):
        msg = f"{source!r} does not hold a recipe mapping; the run directory is damaged."
        raise EclsrError(msg)
    try:
        recipe = validate_recipe(data, source=source, load_plugins=False)
    except RecipeError as exc:
        unloaded = unloaded_plugins(data, plugin_files)
        if unloaded:
            msg = (
                f"run {str(run_dir)!r} lists plugin files in its recipe.yaml that were not passed "
                f"with --plugin: {', '.join(unloaded)}. Plugin files of a run directory are never "
                f"imported automatically (they could run any code); pass --plugin PATH for each "
                f"one you trust."
            )
            raise EclsrError(msg) from None
        missing = _missing_components(run_dir, data)
        if missing:
            msg = (
                f"run {str(run_dir)!r} was trained with components that are not installed now: "
                f"{'; '.join(missing)}. Install the plugin package, or pass --plugin FILE.py."
            )
            raise EclsrError(msg) from None
        msg = f"run {str(run_dir)!r}: its recipe no longer validates with this eclsr and these plugins.\n{exc}"
        raise RecipeError(msg, exc.problems) from None
    _warn_version_changes(run_dir, data)
    return recipe


def unloaded_plugins(recipe: dict[str, Any], plugin_files: Sequence[str | Path]) -> list[str]:
    """Plugin files the recipe lists whose file name is not among the ``--plugin`` files."""
    listed = recipe.get("plugins")
    given = {Path(file).name for file in plugin_files}
    if not isinstance(listed, list):
        return []
    return [str(p) for p in listed if isinstance(p, str) and Path(p).name not in given]


def _recipe_names(node: object) -> set[str]:
    if isinstance(node, dict):
        found = {node["name"]} if isinstance(node.get("name"), str) else set()
        return found.union(*(_recipe_names(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_recipe_names(v) for v in node))
    return set()


def _trained_rows(run_dir: Path, recipe: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The plugins.json rows of the components the recipe used (name → row)."""
    try:
        rows = json.loads((run_dir / rundir.PLUGINS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    used = _recipe_names({k: v for k, v in recipe.items() if k != "name"})
    return {r["name"]: r for r in rows if isinstance(r, dict) and r.get("name") in used}


def _missing_components(run_dir: Path, recipe: dict[str, Any]) -> list[str]:
    from eclsr.registry.listing import plugin_rows

    installed = {row["name"] for row in plugin_rows()}
    missing = []
    for name, row in _trained_rows(run_dir, recipe).items():
        if name not in installed:
            origin = " ".join(str(row.get(k)) for k in ("distribution", "version") if row.get(k))
            missing.append(
                f"{name!r} ({row.get('kind')} from {row.get('plugin')} {origin})".strip()
            )
    return missing


def _warn_version_changes(run_dir: Path, recipe: dict[str, Any]) -> None:
    from eclsr.registry.listing import plugin_rows

    now = {row["name"]: row for row in plugin_rows()}
    for name, row in _trained_rows(run_dir, recipe).items():
        if name in now and now[name].get("version") != row.get("version"):
            warnings.warn(
                f"{name!r} was trained with {row.get('distribution')} {row.get('version')}, "
                f"now {now[name].get('distribution')} {now[name].get('version')} is installed.",
                stacklevel=3,
            )


def load_run_data(recipe: Any) -> SequenceDataset:
    """The recipe's dataset (same raw-id vocabulary as in training), cached per process."""
    import os

    from eclsr.engine.train import load_data

    key = json.dumps(
        [recipe.data.model_dump(mode="json"), os.environ.get("ECLSR_DATA_DIR"), os.getcwd()]
    )
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = load_data(recipe)
    return _DATA_CACHE[key]


def check_same_data(run_dir: Path, data: SequenceDataset) -> None:
    """Refuse data whose hash differs from the one ``results.json`` recorded (ids would shift)."""
    try:
        recorded = json.loads((run_dir / rundir.RESULTS).read_text(encoding="utf-8"))
        expected = recorded["protocol"]["dataset_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # an unfinished run: nothing recorded to check against
    if expected != data.source_hash:
        msg = (
            f"the data of run {str(run_dir)!r} changed since it was trained (dataset hash "
            f"{data.source_hash[:12]}…, recorded {str(expected)[:12]}…): raw ids would map to "
            f"other items. Restore the original data file (data.dataset in its recipe.yaml)."
        )
        raise EclsrError(msg)


def load_model(run_dir: Path, recipe: Any, data: SequenceDataset) -> Model:
    """Build the recipe's model and load ``best.pt`` into it (CPU, eval mode).

    A finished run that trained 0 epochs (the pop baseline) has no ``best.pt``; its model is
    rebuilt from the recipe's seed exactly as the training loop built it.
    """
    from eclsr.engine.setup import allocation_error, training_item_counts

    with torch.random.fork_rng(devices=[]):  # the same init as eclsr.engine.train.run
        torch.manual_seed(recipe.seed)
        with allocation_error(recipe, data.num_items):
            model = Model(recipe, data.num_items, training_item_counts(data))
    if not (run_dir / rundir.BEST).exists() and _trained_epochs(run_dir) == 0:
        return model.eval()  # epochs = 0 (e.g. pop): the untrained model is what was evaluated
    state = rundir.load_state(run_dir / rundir.BEST)
    weights = state.get("model") if isinstance(state, dict) else None
    if not isinstance(weights, dict):
        msg = (
            f"{str(run_dir / rundir.BEST)!r} holds no model weights (expected a dict with 'model')."
        )
        raise EclsrError(msg)
    weights = {str(key).replace("._orig_mod.", "."): value for key, value in weights.items()}
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, ValueError, AttributeError) as exc:  # shapes, keys, types
        detail = " ".join(str(exc).split())[:400]
        msg = (
            f"the checkpoint of run {str(run_dir)!r} does not fit the model its recipe.yaml and "
            f"dataset build ({data.num_items} items): it comes from another recipe, dataset or "
            f"eclsr version. {detail}"
        )
        raise EclsrError(msg) from None
    return model.eval()


def _trained_epochs(run_dir: Path) -> int | None:
    try:
        return int(json.loads((run_dir / rundir.RESULTS).read_text(encoding="utf-8"))["epochs_run"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass
class Recommender:
    """A trained model with its raw-id vocabulary; ranks items for raw-id histories.

    Attributes:
        model: the trained model (eval mode); only its encoder (the UBE) is used.
        data: the dataset the run trained on (for the vocabulary and ``max_len``'s meaning).
        max_len: histories keep their ``max_len`` most recent items.
        recipe: the run's validated recipe.
        run_dir: where the model came from.
    """

    model: Model
    data: SequenceDataset
    max_len: int
    recipe: Any = None
    run_dir: Path | None = None
    batch_size: int = 256

    @classmethod
    def from_run(
        cls,
        run_dir: str | Path,
        *,
        device: str | torch.device = "cpu",
        plugin_files: Sequence[str | Path] = (),
        dataset: SequenceDataset | None = None,
    ) -> Recommender:
        """Load the best checkpoint of a finished run.

        Args:
            run_dir: a run directory written by ``eclsr run``.
            device: where to score.
            plugin_files: extra plugin ``.py`` files the run's recipe needs.
            dataset: the data the run trained on, if not loadable from its recipe (a run
                trained with ``run(..., dataset=...)``).
        """
        path = Path(run_dir)
        recipe: Any = load_run_recipe(path, plugin_files)
        data = dataset if dataset is not None else load_run_data(recipe)
        check_same_data(path, data)
        model = load_model(path, recipe, data).to(torch.device(device))
        return cls(model, data, recipe.data.max_len, recipe, path)

    @property
    def item_ids(self) -> list[str]:
        """Raw id of internal items 1..N (position ``i-1`` holds item ``i``)."""
        vocab = self.data.item_vocab
        if vocab is None:
            return [str(i) for i in range(1, self.data.num_items + 1)]
        return list(vocab[1 : self.data.num_items + 1])

    def _index(self) -> dict[str, int]:
        if "_raw_index" not in self.__dict__:
            self.__dict__["_raw_index"] = {raw: i + 1 for i, raw in enumerate(self.item_ids)}
        return self.__dict__["_raw_index"]

    def encode(
        self, histories: Sequence[Sequence[str]], unknown: Literal["error", "skip"] = "error"
    ) -> list[list[int]]:
        """Map raw-id histories to internal ids 1..N (``int`` raw ids are read as text)."""
        index = self._index()
        out = []
        for row, history in enumerate(histories):
            ids = []
            for raw in history:
                item = index.get(str(raw))
                if item is None and unknown == "error":
                    msg = f"history {row}: item {str(raw)!r} is not in the run's item vocabulary ({len(index)} items). Check the id, or skip unknown ids (unknown='skip', --skip-unknown)."
                    raise EclsrError(msg)
                if item is None:
                    warnings.warn(f"history {row}: skipped unknown item {str(raw)!r}", stacklevel=2)
                    continue
                ids.append(item)
            if not ids:
                msg = f"history {row} has no known item; a recommendation needs at least one."
                raise EclsrError(msg)
            out.append(ids)
        return out

    @torch.no_grad()
    def scores(self, encoded: Sequence[Sequence[int]]) -> torch.Tensor:
        """``[B, N+1]`` scores (column 0, padding, is -inf) for internal-id histories."""
        device = self.model.item_embedding.weight.device
        windows = [list(h)[-self.max_len :] for h in encoded]
        lengths = torch.tensor([len(h) for h in windows], device=device)  # [B]
        items = torch.zeros(len(windows), int(lengths.max()), dtype=torch.long, device=device)
        for row, history in enumerate(windows):  # right-padded [B, T]
            items[row, : len(history)] = torch.tensor(history, device=device)
        encoder = self.model.encoder
        users = encoder.user_vectors(items, lengths).float()  # [B, D]
        table = encoder.item_vectors(self.model.item_embedding, self.data.num_items).float()
        require_finite("user", users)
        require_finite("item", table[1:])  # row 0, padding, may be -inf (pop)
        scores = users @ table.t()  # [B, N+1]
        scores[:, 0] = -torch.inf
        return scores

    def recommend(
        self,
        histories: Sequence[Sequence[str]],
        k: int = 10,
        exclude_seen: bool = False,
        unknown: Literal["error", "skip"] = "error",
    ) -> list[list[tuple[str, float]]]:
        """Top-``k`` raw item ids with scores for each raw-id history (oldest item first).

        Ties are broken by internal id (ascending). ``exclude_seen`` removes every item of the
        given history (not only the last ``max_len``). Fewer than ``k`` come back only when the
        catalogue runs out.
        """
        if k < 1:
            msg = f"k must be >= 1, got {k}."
            raise EclsrError(msg)
        encoded = self.encode(histories, unknown)
        ids, out = self.item_ids, []
        for start in range(0, len(encoded), self.batch_size):
            chunk = encoded[start : start + self.batch_size]
            scores = self.scores(chunk)  # [b, N+1]
            if exclude_seen:
                for row, history in enumerate(chunk):
                    scores[row, torch.tensor(history)] = -torch.inf
            out += [[(ids[i - 1], v) for i, v in row] for row in top_k(scores, k)]
        return out

    def item_table(self) -> tuple[list[str], np.ndarray]:
        """Raw ids and the ``[N, D]`` item embedding rows 1..N (no padding, no [MASK])."""
        weight = self.model.item_embedding.weight.detach().float().cpu()
        return self.item_ids, weight[1 : self.data.num_items + 1].numpy().copy()


def top_k(scores: torch.Tensor, k: int) -> list[list[tuple[int, float]]]:
    """Per row of ``[B, N+1]`` scores, the ``k`` best (id, score), ties by ascending id; no -inf."""
    values, order = torch.sort(scores, dim=1, descending=True, stable=True)  # [B, N+1]
    rows = []
    for row_values, row_order in zip(values[:, :k].tolist(), order[:, :k].tolist(), strict=True):
        pairs = zip(row_order, row_values, strict=True)
        rows.append([(i, v) for i, v in pairs if v != float("-inf")])
    return rows


def export_items(recommender: Recommender, out: Path, overwrite: bool = False) -> list[Path]:
    """Write the item embedding table: ``.npz`` (``ids``, ``vectors``) or ``.npy`` + ``.ids.txt``."""
    ids, vectors = recommender.item_table()
    suffix = out.suffix.lower()
    if suffix not in (".npz", ".npy"):
        msg = f"--out {str(out)!r}: use a .npz file (ids and vectors) or a .npy file (vectors; ids go to FILE.ids.txt)."
        raise EclsrError(msg)
    targets = [out] if suffix == ".npz" else [out, out.with_suffix(".ids.txt")]
    for target in targets:
        if target.exists() and not overwrite:
            msg = f"{str(target)!r} already exists; choose another --out or pass --overwrite."
            raise EclsrError(msg)
    buffer = io.BytesIO()
    if suffix == ".npz":
        np.savez(buffer, ids=np.array(ids, dtype=str), vectors=vectors)
    else:
        np.save(buffer, vectors)
        rundir.atomic_write_bytes(targets[1], ("\n".join(ids) + "\n").encode())
    rundir.atomic_write_bytes(out, buffer.getvalue())
    return targets


@dataclass
class Evaluation:
    """Re-scored metrics of a run next to what its ``results.json`` recorded."""

    split: str
    metrics: dict[str, float]
    saved: dict[str, float]
    ranks: np.ndarray
    saved_ranks: np.ndarray | None
    device: str

    @property
    def matches(self) -> bool:
        """True when every recorded metric is reproduced exactly."""
        return all(self.metrics.get(k) == v for k, v in self.saved.items())


def evaluate_run(
    run_dir: str | Path,
    split: Literal["test", "valid"] = "test",
    device: str | None = None,
    plugin_files: Sequence[str | Path] = (),
    exclude_seen: bool | None = None,
) -> Evaluation:
    """Re-score the run's best checkpoint on ``split`` with the recorded protocol.

    ``device`` defaults to the device the run recorded when it is available here, else CPU
    (then metrics may differ from ``results.json`` in the last digits). ``exclude_seen``
    overrides the recipe's seen-item rule; when it differs from the recorded one there is
    nothing to compare with, so ``saved`` is empty.
    """
    path = Path(run_dir)
    results = read_results(path)
    target = _usable_device(device or _recorded_device(results))
    rec = Recommender.from_run(path, device=target, plugin_files=plugin_files)
    return _evaluate_loaded(rec, path, results, split, target, exclude_seen)


def _evaluate_loaded(
    rec: Recommender,
    path: Path,
    results: dict[str, Any],
    split: Literal["test", "valid"],
    target: torch.device,
    exclude_seen: bool | None,
) -> Evaluation:
    """:func:`evaluate_run` for a run whose model is already loaded."""
    from eclsr.data.splits import make_split
    from eclsr.engine.train import evaluate_split

    recipe = with_seen_items_rule(rec.recipe, exclude_seen)
    windows = make_split(rec.data, rec.max_len).evaluation(split)
    metrics, ranks = evaluate_split(rec.model, rec.data, windows, recipe, target)
    if recipe.eval.exclude_seen != rec.recipe.eval.exclude_seen:
        return Evaluation(split, metrics, {}, ranks, None, str(target))
    saved_ranks = _saved_ranks(path, split)
    return Evaluation(split, metrics, results.get(split, {}), ranks, saved_ranks, str(target))


def with_seen_items_rule(recipe: Any, exclude_seen: bool | None) -> Any:
    """``recipe`` with ``eval.exclude_seen`` set (unchanged when ``exclude_seen`` is None)."""
    if exclude_seen is None or exclude_seen == recipe.eval.exclude_seen:
        return recipe
    evaluation = recipe.eval.model_copy(update={"exclude_seen": exclude_seen})
    return recipe.model_copy(update={"eval": evaluation})


def rescore_run(
    run_dir: str | Path,
    out_dir: str | Path,
    exclude_seen: bool,
    device: str | None = None,
    plugin_files: Sequence[str | Path] = (),
    command: str | None = None,
) -> dict[str, Any]:
    """Score a trained run under another seen-item rule; write the result as a run directory.

    Excluding seen items is an evaluation choice: the same weights answer both protocols, so
    no training is repeated. ``out_dir`` gets what a finished run's comparison needs — a
    ``results.json`` whose ``protocol`` records the new rule (and ``rescored_from`` the source),
    the per-user ``ranks.npz`` of both splits, the resolved ``recipe.yaml`` with the rule
    changed and the source's ``metrics.jsonl`` — so ``eclsr compare`` and ``eclsr results
    collect`` treat it like any run. No checkpoint is copied; ``out_dir`` must not exist yet.
    """
    import yaml

    source = Path(run_dir)
    target = Path(out_dir)
    if target.exists():
        msg = f"--out {str(target)!r} already exists; the re-scored run needs a new folder (it never overwrites). Pick another path or remove that folder."
        raise EclsrError(msg)
    results = read_results(source)
    target_device = _usable_device(device or _recorded_device(results))
    rec = Recommender.from_run(source, device=target_device, plugin_files=plugin_files)
    evaluations = {
        split: _evaluate_loaded(rec, source, results, split, target_device, exclude_seen)
        for split in ("valid", "test")
    }
    rec_recipe = with_seen_items_rule(rec.recipe, exclude_seen)
    rescored = {
        **results,
        "valid": evaluations["valid"].metrics,
        "test": evaluations["test"].metrics,
        "device": evaluations["test"].device,
        "protocol": {**results.get("protocol", {}), "exclude_seen": exclude_seen},
        "rescored_from": str(source.resolve()),
    }
    if command is not None:
        rescored["command"] = command
    if results.get("command"):
        rescored["trained_with"] = results["command"]
    with np.load(source / "ranks.npz", allow_pickle=False) as saved:
        users, valid_users = saved["users"], saved["valid_users"]
    target.mkdir(parents=True)
    np.savez_compressed(
        target / "ranks.npz",
        users=users,
        test=evaluations["test"].ranks,
        valid_users=valid_users,
        valid=evaluations["valid"].ranks,
    )
    recipe_text = yaml.safe_dump(rec_recipe.model_dump(mode="json"), sort_keys=False)
    rundir.atomic_write_bytes(target / rundir.RECIPE, recipe_text.encode())
    if (source / rundir.METRICS).is_file():
        shutil.copyfile(source / rundir.METRICS, target / rundir.METRICS)
    rundir.write_json(target / rundir.RESULTS, rescored)
    return rescored


def _usable_device(name: str) -> torch.device:
    """``name`` as a torch device that exists here; a located error otherwise."""
    try:
        target = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        msg = f"--device {name!r} is not a device name; use cpu, cuda or cuda:N."
        raise EclsrError(msg) from None
    if target.type == "cuda" and (
        not torch.cuda.is_available() or (target.index or 0) >= torch.cuda.device_count()
    ):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        msg = f"--device {name!r}: this machine has {count} CUDA device(s). Use --device cpu."
        raise EclsrError(msg)
    if target.type not in ("cpu", "cuda"):
        msg = f"--device {name!r}: only cpu and cuda are supported."
        raise EclsrError(msg)
    return target


def _recorded_device(results: dict[str, Any]) -> str:
    recorded = str(results.get("device", "cpu"))
    if recorded.startswith("cuda") and not torch.cuda.is_available():
        return "cpu"
    return recorded


def _saved_ranks(run_dir: Path, split: str) -> np.ndarray | None:
    try:
        with np.load(run_dir / "ranks.npz", allow_pickle=False) as saved:
            return saved[split] if split in saved.files else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None  # damaged or truncated: the re-scored ranks are shown without the comparison
