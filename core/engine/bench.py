"""``eclsr bench``: training and evaluation speed, peak memory and MFU of recipes on one dataset.

A benchmark, not a test. For each recipe it measures, in a fresh process of its own (so peak RSS
and the allocator state belong to that model alone):

* the fp32 matmul throughput of the machine, measured at the start of that process;
* training: real target positions per second and seconds per epoch, either over full epochs or
  extrapolated from ``max_batches`` steady-state batches (after ``warmup`` batches) as
  mean seconds per batch × batches per epoch. Batches are the engine's own (length-bucketed,
  trimmed) and the step is the training loop's step;
* full-ranking evaluation of every user on the test split (users per second);
* peak RSS (``ru_maxrss``) and MFU = analytic model FLOPs per second / measured matmul FLOP/s.

The FLOP count is analytic (see :func:`batch_flops` and docs/performance.md): only real
positions count as tokens, so the FLOPs spent on padding are waste, not model FLOPs.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eclsr.components.configs import StepShape
from eclsr.data.batching import epoch_order, targets_per_epoch
from eclsr.engine.allocator import tune_allocator
from eclsr.engine.distributed import resolve_device
from eclsr.engine.setup import RunSetup
from eclsr.errors import EclsrError

ML1M_SYNTHETIC = "ml-1m-synthetic"
ML1M_USERS, ML1M_ITEMS = 6040, 3416
NAMED = ("toys", "sports", "yelp", "ml-1m")
MALLOCS = ("default", "tuned")
TUNED_MALLOC = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"


@dataclass(frozen=True)
class BenchOptions:
    """What to benchmark and how (the ``eclsr bench`` flags)."""

    recipes: tuple[str, ...] = ()
    dataset: str | None = None
    preset: str = "code"
    models: tuple[str, ...] = ("sasrec", "ecl-sr")
    epochs: int = 1
    max_batches: int | None = None
    warmup: int = 5
    overrides: tuple[str, ...] = ()
    evaluate: bool = True
    isolate: bool = True
    malloc: str = "inherit"
    profile_steps: int = 0
    compare_epoch_seconds: float | None = None
    recipe_dir: str | None = None


@dataclass
class Job:
    """One model to benchmark: a label, the recipe as a dict and the dataset spec."""

    label: str
    recipe: dict[str, Any]
    dataset: str
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- recipes and data


def recipe_root(explicit: str | None) -> Path:
    """The ``recipes/`` folder: ``explicit``, else ./recipes, else the one beside the package."""
    candidates = [Path(explicit)] if explicit else []
    candidates += [Path.cwd() / "recipes", Path(__file__).resolve().parents[1] / "recipes"]
    for path in candidates:
        if path.is_dir():
            return path
    msg = "cannot find the recipes/ folder: run from the repository root or pass --recipe-dir."
    raise EclsrError(msg)


def make_jobs(options: BenchOptions) -> list[Job]:
    """The recipes to run: the given files, else ``<model>[-code]/<dataset>.toml`` per model."""
    from eclsr.recipe.load import apply_overrides, read_recipe_file

    dataset = options.dataset or "yelp"
    if options.recipes:
        sources = [(Path(r).stem, Path(r)) for r in options.recipes]
    else:
        root, stem = recipe_root(options.recipe_dir), _recipe_stem(dataset)
        suffix = "-code" if options.preset == "code" else ""
        sources = [(m, root / f"{m}{suffix}" / f"{stem}.toml") for m in options.models]
    jobs = []
    for label, path in sources:
        data = apply_overrides(read_recipe_file(path), options.overrides)
        data.setdefault("name", f"{path.parent.name}-{path.stem}")
        spec = options.dataset or data.get("data", {}).get("dataset", "synthetic")
        if spec != ML1M_SYNTHETIC:
            data.setdefault("data", {})["dataset"] = spec
        jobs.append(Job(label, data, spec, str(path)))
    return jobs


def _recipe_stem(dataset: str) -> str:
    if dataset == ML1M_SYNTHETIC:
        return "ml-1m"
    return dataset if dataset in NAMED else "sports"  # a file: the H64 code hyper-parameters


def ml1m_shaped(max_len: int, seed: int = 0) -> Any:
    """Synthetic ML-1m-shaped data: 6,040 users, 3,416 items, every training window full.

    Every user has at least ``max_len + 3`` items, so each training row is a full ``max_len``
    window (the reference code's 'h' windows) and valid/test histories are full too.
    """
    from eclsr.data.synthetic import generate

    data = generate(
        ML1M_USERS, ML1M_ITEMS, seed, min_length=max_len + 3, mean_extra_length=20.0,
        max_length=max_len + 100,
    )  # fmt: skip
    data.name = ML1M_SYNTHETIC
    return data


def load_job_data(recipe: Any, dataset: str) -> Any:
    """The dataset of one job (synthetic ML-1m shape, or through the data layer)."""
    if dataset == ML1M_SYNTHETIC:
        return ml1m_shaped(recipe.data.max_len, recipe.seed)
    from eclsr.engine.train import load_data

    return load_data(recipe)


# --------------------------------------------------------------------------- FLOPs


def batch_flops(
    recipe: Any, lengths: np.ndarray, width: int, num_items: int, targets: float | None = None
) -> float | None:
    """Model FLOPs of one training step (forward + backward = 3× forward where gradients flow).

    The UBE's first pass (the encoder config's ``forward_flops``) plus what every active head
    adds (its config's ``train_flops``): core names no component. None when a component has no
    formula (e.g. GRU4Rec, aug_prediction). ``targets``: next-item loss terms in the batch
    (default: every real position; prefix examples have one per row).
    """
    shape = StepShape(
        lengths, width, num_items, recipe.encoder.hidden_size(), recipe.encoder, tuple(recipe.heads),
        targets,
    )  # fmt: skip
    ube = recipe.encoder.forward_flops(shape.tokens, width)
    if ube is None:
        return None
    total = 3.0 * ube
    for head in recipe.heads:
        if head.weight == 0:
            continue
        flops = head.train_flops(shape)
        if flops is None:
            return None
        total += flops
    return total


# --------------------------------------------------------------------------- measurements


def matmul_gflops(
    device: torch.device | None = None, sizes: Sequence[int] = (1024, 2048), repeats: int = 3
) -> dict[str, float]:
    """Best fp32 matmul GFLOP/s per size on ``device`` (one warm-up product first), and their
    maximum: the denominator of the MFU, so it is measured where the model trains (on a GPU
    against the CPU's peak, the first CUDA bench printed an MFU of 4750%)."""
    device = device or torch.device("cpu")
    on_gpu = device.type == "cuda"
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)
    if on_gpu:
        sizes = (*sizes, 8192)  # a GPU is far from its peak on 1024² products
    out: dict[str, float] = {}
    for n in sizes:
        a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
        a @ b  # noqa: B018  (warm-up)
        sync()
        best = min(_timed(lambda a=a, b=b: (a @ b, sync())) for _ in range(repeats))
        out[f"{n}"] = round(2.0 * n**3 / best / 1e9, 1)
    out["peak"] = max(out.values())
    return out


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (MiB; ru_maxrss is KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def bench_job(job: Job, options: BenchOptions) -> dict[str, Any]:
    """Measure one recipe (runs inside the worker process when isolated)."""
    from eclsr.recipe.load import validate_recipe

    recipe = validate_recipe(job.recipe, source=job.source or job.label)
    if recipe.train.threads:
        torch.set_num_threads(recipe.train.threads)
    allocator_tuned = recipe.train.tune_allocator and tune_allocator()
    peak = matmul_gflops(resolve_device(recipe.train.device))  # threads/device it trains with
    data = load_job_data(recipe, job.dataset)
    result: dict[str, Any] = {
        "model": job.label, "recipe": job.source, "dataset": job.dataset,
        "users": data.num_users, "items": data.num_items, "max_len": recipe.data.max_len,
        "hidden": recipe.encoder.hidden_size(), "amp": recipe.train.amp,
        "threads": torch.get_num_threads(), "matmul_gflops": peak,
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "allocator_tuned_by_mallopt": allocator_tuned,
        "rss_after_data_mib": peak_rss_mib(),
    }  # fmt: skip
    result |= train_and_time(recipe, data, options, peak["peak"])
    result["peak_rss_mib"] = peak_rss_mib()
    return result


def run_bench(options: BenchOptions) -> dict[str, Any]:
    """Benchmark every job; returns the JSON document (``models`` holds one dict per recipe)."""
    jobs = make_jobs(options)
    if not options.isolate:
        results = [bench_job(job, options) for job in jobs]
    elif options.malloc == "both":  # default then tuned, per job: a ratio from one run
        results = [_run_isolated(job, options, malloc) for job in jobs for malloc in MALLOCS]
        for row, malloc in zip(results, MALLOCS * len(jobs), strict=True):
            row["model"] += f" ({malloc} malloc)"
    else:
        results = [_run_isolated(job, options, options.malloc) for job in jobs]
    for row in results:
        if options.compare_epoch_seconds:
            row["reference_epoch_seconds"] = options.compare_epoch_seconds
            row["speedup_vs_reference"] = round(
                options.compare_epoch_seconds / row["train"]["seconds_per_epoch"], 2
            )
    return {
        "command": "eclsr bench",
        "options": {k: v for k, v in options.__dict__.items()},
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "models": results,
    }


def _with_train(recipe: dict[str, Any], **train: Any) -> dict[str, Any]:
    """A copy of a recipe dict with ``train`` keys replaced."""
    return {**recipe, "train": {**recipe.get("train", {}), **train}}


def _run_isolated(job: Job, options: BenchOptions, malloc: str) -> dict[str, Any]:
    """Run :func:`bench_job` in a fresh spawned process (own peak RSS, own allocator settings).

    ``default`` also switches off the engine's own start-up tuning (``train.tune_allocator``), so
    the pair measures glibc's defaults against the tuned allocator.
    """
    if malloc == "default":
        job = dataclasses.replace(job, recipe=_with_train(job.recipe, tune_allocator=False))
    saved = os.environ.get("GLIBC_TUNABLES")
    if malloc == "tuned":
        os.environ["GLIBC_TUNABLES"] = TUNED_MALLOC
    elif malloc == "default":
        os.environ.pop("GLIBC_TUNABLES", None)
    try:
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            return pool.submit(bench_job, job, options).result()
    finally:
        if saved is None:
            os.environ.pop("GLIBC_TUNABLES", None)
        else:
            os.environ["GLIBC_TUNABLES"] = saved


def train_and_time(
    recipe: Any, data: Any, options: BenchOptions, peak_gflops: float
) -> dict[str, Any]:
    """Build the run as ``eclsr run`` does, time training (and evaluation).

    Returns the ``train``/``eval`` result sections.
    """
    from eclsr.engine.setup import set_up_run

    setup = set_up_run(recipe, data)
    loop = TimedSteps(setup)
    orders = [epoch_order(setup.windows, recipe.train.batch_size, recipe.seed, e, recipe.train.bucket_by_length)
              for e in range(max(options.epochs, 1))]  # fmt: skip
    for rows in orders[0][: options.warmup]:
        loop.step(rows)
    full = options.max_batches is None or options.max_batches >= len(orders[0])
    if full:  # every batch of options.epochs epochs
        timed = [rows for order in orders for rows in order]
    else:  # max_batches steady-state batches of epoch 0, after the warm-up ones
        timed = (orders[0][options.warmup :] or orders[0])[: options.max_batches]
    seconds = [loop.step(rows) for rows in timed]
    out = {
        "train": _train_section(
            recipe, data, setup.windows, orders[0], timed, seconds, full, peak_gflops
        )
    }
    out["device"] = str(setup.device)
    if options.profile_steps:
        out["profile"] = profile_steps(loop, orders[0][: options.profile_steps])
    if options.evaluate:
        out["eval"] = eval_section(setup.model, data, setup.split, recipe, setup.device)
    return out


class TimedSteps:
    """The training loop's own step (:meth:`RunSetup.train_step`), timed one batch at a time."""

    def __init__(self, setup: RunSetup) -> None:
        """Time steps of ``setup`` (its model goes to training mode)."""
        self.setup = setup
        setup.model.train()

    def step(self, rows: np.ndarray) -> float:
        """Run one optimisation step on window ``rows``; return its wall seconds."""
        device = self.setup.device
        _sync(device)
        start = time.perf_counter()
        _, loss = self.setup.train_step(self.setup.make_step(rows))
        float(loss.detach())  # the loop reads every loss back (a sync on GPU)
        _sync(device)
        return time.perf_counter() - start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _train_section(
    recipe: Any,
    data: Any,
    windows: Any,
    epoch: list[np.ndarray],
    timed: list[np.ndarray],
    seconds: list[float],
    full: bool,
    peak_gflops: float,
) -> dict[str, Any]:
    """Positions/s, seconds per epoch (measured or extrapolated), FLOPs and MFU."""
    positions = [int(windows.length[rows].sum()) for rows in timed]
    targets = [_rows_targets(windows, rows) for rows in timed]
    flops = [_rows_flops(recipe, windows, rows, data.num_items) for rows in timed]
    epoch_flops = [_rows_flops(recipe, windows, rows, data.num_items) for rows in epoch]
    total = sum(seconds)
    per_batch = total / max(len(seconds), 1)
    known = None not in flops
    model_flops_per_s = sum(flops) / total if known and total > 0 else None  # type: ignore[arg-type]
    return {
        "epoch_mode": "full" if full else "extrapolated",
        "epoch_note": (
            f"{len(seconds)} full-epoch batches timed"
            if full
            else f"mean of {len(seconds)} steady-state batches × {len(epoch)} batches per epoch"
        ),
        "batches_per_epoch": len(epoch),
        "batches_timed": len(seconds),
        "positions_per_epoch": int(windows.length.sum()),
        "positions_per_second": round(sum(positions) / total, 1) if total else None,
        "examples": "prefixes (loss at each row's last position)"
        if windows.last_only
        else "every position",
        "targets_per_epoch": targets_per_epoch(windows),
        "targets_per_second": round(sum(targets) / total, 1) if total else None,
        "seconds_per_epoch": round(total / (len(seconds) / len(epoch)), 2)
        if full
        else round(per_batch * len(epoch), 2),
        "seconds_per_batch": round(per_batch, 4),
        "seconds_per_batch_median": round(float(np.median(seconds)), 4) if seconds else None,
        "model_gflop_per_epoch": round(sum(epoch_flops) / 1e9, 1)  # type: ignore[arg-type]
        if None not in epoch_flops
        else None,
        "model_flops_per_second": model_flops_per_s,
        "model_gflops": round(model_flops_per_s / 1e9, 2) if model_flops_per_s else None,
        "mfu": round(model_flops_per_s / (peak_gflops * 1e9), 6) if model_flops_per_s else None,
    }


def _rows_targets(windows: Any, rows: np.ndarray) -> int:
    """Next-item loss terms of a batch: one per row of prefix examples, else every position."""
    return len(rows) if windows.last_only else int(windows.length[rows].sum())


def _rows_flops(recipe: Any, windows: Any, rows: np.ndarray, num_items: int) -> float | None:
    lengths = windows.length[rows]
    targets = float(_rows_targets(windows, rows))
    return batch_flops(recipe, lengths, int(lengths.max()), num_items, targets)


def eval_section(model: Any, data: Any, split: Any, recipe: Any, device: Any) -> dict[str, Any]:
    """Time full-ranking evaluation of every test user (the training loop's ``evaluate_split``)."""
    from eclsr.engine.train import evaluate_split

    windows = split.evaluation("test")
    _sync(device)
    start = time.perf_counter()
    metrics, _ = evaluate_split(model, data, windows, recipe, device)
    _sync(device)
    seconds = time.perf_counter() - start
    return {
        "users": len(windows.users),
        "seconds": round(seconds, 3),
        "users_per_second": round(len(windows.users) / seconds, 1),
        "batch_size": recipe.eval.batch_size,
        "ndcg@10": round(metrics.get("ndcg@10", float("nan")), 5),
    }


def profile_steps(
    loop: TimedSteps, batches: list[np.ndarray], rows: int = 25
) -> list[dict[str, Any]]:
    """torch.profiler over some steps: the top ops by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch_rows in batches:
            loop.step(batch_rows)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    return [
        {
            "op": e.key,
            "self_cpu_s": round(e.self_cpu_time_total / 1e6, 3),
            "share": round(e.self_cpu_time_total / total, 4),
            "calls": e.count,
        }
        for e in events[:rows]
    ]
