"""Studies: an Optuna study over a recipe, its trials run as normal run directories.

One budget of ``trials`` counts per study, not per process, so a killed study resumes where it
stopped and W workers (processes here, or machines on one SQLAlchemy URL) share it. A trial
counts unless it was lost: killed (its heartbeat went stale) or interrupted by SIGINT/SIGTERM.
Trials whose values make the recipe invalid or the run fail are recorded FAIL with the error in
the user attribute ``error``, and count. Workers on one machine take a file lock around "count,
then create a trial", so they never overshoot the budget; workers on several machines may each
run one trial past it at the very end.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import multiprocessing
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eclsr.errors import EclsrError, RunInterrupted, TuneError
from eclsr.tune.space import Space, with_values

PRUNERS = ("median", "hyperband", "none")
EXTRA_HINT = "pip install 'eclsr[tune]' (Optuna and matplotlib)"
#: Trial user attributes written by :func:`objective`.
ERROR, RUN_DIR, RECIPE, PRUNED_AT = "error", "run_dir", "recipe", "pruned_at_epoch"

OnTrial = Callable[[Any], None]


def require_optuna() -> Any:
    """Import Optuna, or say which extra installs it."""
    if importlib.util.find_spec("optuna") is None:
        msg = f"eclsr tune needs Optuna, which is not installed: {EXTRA_HINT}."
        raise TuneError(msg)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the CLI prints one line per trial
    # Heartbeats, stale-trial checks and the matplotlib plots are marked experimental; the tests
    # pin what eclsr relies on, so the warning would only be noise on every trial.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


@dataclass(frozen=True)
class TuneSettings:
    """Everything a worker needs (picklable: workers are spawned processes).

    Attributes:
        recipe_data: the recipe as read, after ``--set``, with its ``name``.
        space: the checked search space.
        trials: the study's trial budget (all workers, all restarts together).
        out: folder of the trial run directories (and of the default SQLite storage).
        study_name: the Optuna study name.
        storage: an SQLAlchemy URL; None → ``sqlite:///<out>/study.db``.
        timeout: seconds after which a worker starts no new trial (None: no limit).
        workers: processes on this machine sharing the study.
        pruner: ``median``, ``hyperband`` or ``none``.
        seed: seeds the TPE sampler (with the worker number and the trials already in the study).
        heartbeat: seconds between trial heartbeats; a RUNNING trial silent for twice that is lost.
        pruner_startup: trials that finish before the median pruner prunes.
        pruner_warmup: epochs of each trial that are never pruned.
        threads: torch threads per worker (W × threads ≤ cores); None keeps the recipe's.
        base_dir: the recipe's folder (its ``plugins`` files are relative to it).
        plugin_files: ``--plugin`` files every worker loads.
        command: the command line that tunes; each trial's ``results.json`` records it.
    """

    recipe_data: dict[str, Any]
    space: Space
    trials: int
    out: Path
    study_name: str
    storage: str | None = None
    timeout: float | None = None
    workers: int = 1
    pruner: str = "median"
    seed: int = 0
    heartbeat: int = 30
    pruner_startup: int = 5
    pruner_warmup: int = 1
    threads: int | None = None
    base_dir: Path | None = None
    plugin_files: tuple[str, ...] = field(default_factory=tuple)
    command: str | None = None

    def __post_init__(self) -> None:
        """Refuse numbers no study can run with, naming the flag."""
        checks = [
            ("--trials", self.trials, self.trials >= 1, "at least 1"),
            ("--workers", self.workers, self.workers >= 1, "at least 1"),
            ("--heartbeat", self.heartbeat, self.heartbeat >= 1, "at least 1 (seconds)"),
            ("--timeout", self.timeout, self.timeout is None or self.timeout > 0, "positive"),
            ("--pruner-startup", self.pruner_startup, self.pruner_startup >= 0, "0 or more"),
            ("--pruner-warmup", self.pruner_warmup, self.pruner_warmup >= 0, "0 or more"),
        ]
        for flag, value, ok, want in checks:
            if not ok:
                msg = f"{flag} must be {want}, got {value}."
                raise TuneError(msg)
        if self.pruner not in PRUNERS:
            msg = f"--pruner {self.pruner!r} is unknown; valid choices: {', '.join(PRUNERS)}."
            raise TuneError(msg)

    @property
    def storage_url(self) -> str:
        """The storage URL, SQLite under ``out`` by default."""
        return self.storage or sqlite_url(self.out / "study.db")


def sqlite_url(path: Path) -> str:
    """``sqlite:////abs/path/study.db``."""
    return f"sqlite:///{path.resolve()}"


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Torch threads for each of ``workers`` processes so that workers × threads ≤ cores."""
    cores = cores or len(os.sched_getaffinity(0))
    if workers < 1:
        msg = f"--workers must be at least 1, got {workers}."
        raise TuneError(msg)
    if workers > cores:
        msg = f"--workers {workers} is more than the {cores} cores of this machine; each worker needs one. Use --workers {cores} or fewer (more machines can share the study through --storage)."
        raise TuneError(msg)
    return cores // workers


def open_storage(url: str, heartbeat: int | None = None) -> Any:
    """An Optuna RDB storage; SQLite waits for its lock instead of failing under several workers."""
    optuna = require_optuna()
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        kwargs = {"connect_args": {"timeout": 120}}
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    grace = 2 * heartbeat if heartbeat else None
    attempts = 5
    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs=kwargs, heartbeat_interval=heartbeat, grace_period=grace
            )
        except Exception as exc:  # a bad URL, a missing driver, an unreachable server
            if _lost_schema_creation_race(exc) and attempt < attempts - 1:
                time.sleep(0.5 * (attempt + 1))
                continue
            msg = f"--storage {url!r} cannot be opened ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). Use an SQLAlchemy URL such as sqlite:///study.db or postgresql://user@host/db."
            raise TuneError(msg) from None
    raise AssertionError("unreachable: the last attempt returns or raises")


def _lost_schema_creation_race(exc: Exception) -> bool:
    """Whether ``exc`` comes from another process creating the same new database's tables.

    Two workers (or a worker and a monitor) that open a fresh database at once both try to
    create Optuna's tables and stamp its schema version: the slower one finds a table that
    "already exists" or a version row that breaks a UNIQUE constraint. A moment later the
    schema is complete and opening it again succeeds.
    """
    text = str(exc)
    return "already exists" in text or "UNIQUE constraint failed: alembic_version" in text


def make_pruner(settings: TuneSettings) -> Any:
    """The pruner ``--pruner`` names, reading the per-epoch validation metric."""
    optuna = require_optuna()
    if settings.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=settings.pruner_startup, n_warmup_steps=settings.pruner_warmup
        )
    if settings.pruner == "hyperband":
        epochs = int(settings.recipe_data.get("train", {}).get("epochs", 300))
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1))
    if settings.pruner == "none":
        return optuna.pruners.NopPruner()
    msg = f"--pruner {settings.pruner!r} is unknown; valid choices: {', '.join(PRUNERS)}."
    raise TuneError(msg)


def open_study(settings: TuneSettings, worker: int = 0, storage: Any = None) -> Any:
    """Create or load the study; its sampler is TPE, seeded per worker and per restart.

    The seed adds the number of trials already stored, so a resumed study does not replay the
    random start-up draws it already tried, and two workers do not draw the same values.
    """
    optuna = require_optuna()
    storage = storage or open_storage(settings.storage_url, settings.heartbeat)
    existing = _trial_count(storage, settings.study_name)
    sampler = optuna.samplers.TPESampler(seed=settings.seed + 7919 * worker + existing)
    study = optuna.create_study(
        study_name=settings.study_name,
        storage=storage,
        sampler=sampler,
        pruner=make_pruner(settings),
        direction="maximize",
        load_if_exists=True,
    )
    attrs = study.user_attrs
    if "metric" not in attrs:  # first creation: what the report needs without the recipe file
        study.set_user_attr("metric", monitor(settings.recipe_data))
        study.set_user_attr("space", settings.space.as_dict())
        study.set_user_attr("trials", settings.trials)
    elif attrs.get("space") != settings.space.as_dict():
        msg = f"study {settings.study_name!r} in {settings.storage_url} was started with another space ({json.dumps(attrs.get('space'))}). Resume with the same space file, or choose a new --study name."
        raise TuneError(msg)
    return study


def _trial_count(storage: Any, name: str) -> int:
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return 0
    return len(storage.get_all_trials(study_id, deepcopy=False))


def monitor(recipe_data: dict[str, Any]) -> str:
    """The validation metric trials maximise: the recipe's ``train.monitor``, e.g. ``ndcg@10``."""
    from eclsr.recipe.sections import TrainConfig

    text = recipe_data.get("train", {}).get("monitor", TrainConfig.model_fields["monitor"].default)
    return str(text).split(".", 1)[1]


def counts(trial: Any) -> bool:
    """Whether a trial uses up one unit of the budget (every trial but a lost one)."""
    state = trial.state.name
    return state != "FAIL" or ERROR in trial.user_attrs


class TrialLock:
    """An exclusive file lock across this machine's workers, around "count, then create a trial"."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = path.open("a")
        self.held = False

    def acquire(self) -> None:
        """Block until this process holds the lock."""
        fcntl.flock(self._handle, fcntl.LOCK_EX)
        self.held = True

    def release(self) -> None:
        """Release the lock if held (safe to call twice)."""
        if self.held:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self.held = False


class _DatasetCache:
    """Each worker loads a dataset once, unless a trial tunes the ``data`` section."""

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}

    def get(self, recipe: Any) -> Any:
        from eclsr.engine.train import load_data

        key = recipe.data.model_dump_json()
        if key not in self._data:
            self._data = {key: load_data(recipe)}  # keep one: a tuned data section would pile up
        return self._data[key]


def run_worker(settings: TuneSettings, worker: int = 0, on_trial: OnTrial | None = None) -> int:
    """Run trials until the study's budget is used or ``timeout`` passes; returns trials run here.

    Raises :class:`RunInterrupted` after SIGINT/SIGTERM stopped a trial (it is lost, so a resumed
    study runs it again with new values).
    """
    optuna = require_optuna()
    load_plugin_files(settings.plugin_files)
    study = open_study(settings, worker)
    lock = TrialLock(settings.out / ".trial.lock")
    deadline = None if settings.timeout is None else time.monotonic() + settings.timeout
    interrupted: list[RunInterrupted] = []
    cache = _DatasetCache()
    ran = 0

    def objective(trial: Any) -> float:
        lock.release()  # the trial exists (RUNNING, counted): others may create theirs
        try:
            return run_trial(trial, settings, cache)
        except RunInterrupted:
            msg = f"interrupted: trial {trial.number} stopped and is lost (not counted). Rerun the same `eclsr tune` command to resume the study; a new trial replaces it."
            interrupted.append(RunInterrupted(msg))
            raise  # recorded FAIL without `error`: lost, not counted

    callbacks = [lambda study, trial: on_trial(trial)] if on_trial is not None else []
    while not interrupted and (deadline is None or time.monotonic() < deadline):
        lock.acquire()
        try:
            optuna.storages.fail_stale_trials(study)  # a killed worker's trial: lost
            trials = study.get_trials(deepcopy=False)
            waiting = any(t.state.name == "WAITING" for t in trials)  # enqueued: always run
            if not waiting and sum(counts(t) for t in trials) >= settings.trials:
                break
            study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=callbacks)
            ran += 1
        finally:
            lock.release()
    if interrupted:
        raise interrupted[0]
    return ran


def run_trial(trial: Any, settings: TuneSettings, cache: Any = None) -> float:
    """One trial: draw the values, validate, train with pruning; returns the best valid metric."""
    optuna = require_optuna()
    from eclsr.engine.train import run
    from eclsr.recipe.load import validate_recipe

    run_dir = settings.out / "trials" / f"trial-{trial.number:04d}"
    metric = monitor(settings.recipe_data)

    def prune(epoch: int, record: dict[str, Any]) -> None:
        trial.report(record["valid"][metric], epoch)
        if not last_epoch(epoch) and trial.should_prune():
            trial.set_user_attr(PRUNED_AT, epoch)
            raise optuna.TrialPruned(f"pruned after epoch {epoch}")

    try:
        values = {param: param.suggest(trial) for param in settings.space.params}
        data = with_values(settings.recipe_data, values)
        data["name"] = f"{settings.study_name}-trial-{trial.number:04d}"
        trial.set_user_attr(RECIPE, data)
        trial.set_user_attr(RUN_DIR, str(run_dir))
        if settings.threads is not None:  # the split of cores among workers, not a tuned value
            data = {**data, "train": {**data.get("train", {}), "threads": settings.threads}}
        recipe = validate_recipe(data, source=f"trial {trial.number}", base_dir=settings.base_dir)
        train = recipe.train

        def last_epoch(epoch: int) -> bool:
            """Pruning after the last epoch saves nothing and would throw the result away."""
            return train.schedule.name != "two_stage" and epoch + 1 >= train.epochs

        dataset = cache.get(recipe) if cache is not None else None
        result = run(
            recipe,
            run_dir,
            dataset=dataset,
            overwrite=True,  # a trial number is never reused; a leftover folder is stale
            progress=False,
            console=_quiet_console(),
            command=settings.command,
            on_epoch=prune,
        )
    except (optuna.TrialPruned, RunInterrupted):
        raise
    except Exception as exc:  # bad values or a failed run: FAIL, recorded; the study goes on
        trial.set_user_attr(ERROR, _one_line(exc))
        raise
    return float(result.results["valid"][metric])


def _quiet_console() -> Any:
    from rich.console import Console

    return Console(quiet=True)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    kind = "" if isinstance(exc, EclsrError) else f"{type(exc).__name__}: "
    return (kind + text)[:1000]


def load_plugin_files(files: Sequence[Path]) -> None:
    """A spawned worker's ``--plugin`` files (it starts with the entry-point plugins only)."""
    from eclsr.registry.manager import load_plugin_file

    for file in files:
        load_plugin_file(file)


def tune(settings: TuneSettings, on_trial: OnTrial | None = None) -> Any:
    """Run a study to its budget with ``settings.workers`` processes; returns the study."""
    optuna = require_optuna()
    study = open_study(settings)  # create it once, before workers race to
    if settings.workers == 1:
        run_worker(settings, 0, on_trial)
        return study
    jobs = [(settings, worker, on_trial) for worker in range(settings.workers)]
    in_processes(run_worker, jobs, what="a tuning worker", resumed_by="the study")
    return optuna.load_study(
        study_name=settings.study_name, storage=open_storage(settings.storage_url)
    )


def in_processes(
    target: Callable[..., None], jobs: list[tuple[Any, ...]], what: str, resumed_by: str
) -> None:
    """``target(*job)`` in one spawned process per job, all at once; raise what any reports.

    Spawned, not forked: no torch or SQLite state is shared. Ctrl-C or an error here stops them
    all (SIGTERM: each run stops after its step, resumable). ``what`` names a process in errors,
    ``resumed_by`` what a rerun of the command resumes.
    """
    context = multiprocessing.get_context("spawn")
    errors = context.Queue()
    processes = [
        context.Process(target=_reporting_errors, args=(target, job, errors)) for job in jobs
    ]
    with _terminate_on_exit(processes):
        for process in processes:
            process.start()
        for process in processes:
            process.join()
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    failed = [p.exitcode for p in processes if p.exitcode]
    if problems or failed:
        if any(kind == "interrupted" for kind, _ in problems):
            msg = f"{resumed_by} was interrupted; rerun the same command to resume it."
            raise RunInterrupted(msg)
        text = "; ".join(message for _, message in problems) or f"exit codes {failed}"
        msg = f"{what} failed: {text}"
        raise TuneError(msg)


def _reporting_errors(target: Callable[..., None], job: tuple[Any, ...], errors: Any) -> None:
    """A spawned process: errors go back to the parent, which raises them (only the CLI prints)."""
    try:
        target(*job)
    except RunInterrupted as exc:
        errors.put(("interrupted", str(exc)))
    except EclsrError as exc:
        errors.put(("error", str(exc)))
        raise SystemExit(2) from None


@contextlib.contextmanager
def _terminate_on_exit(processes: list[Any]) -> Iterator[None]:
    """On Ctrl-C or an error in the parent, stop the workers (they stop after their step)."""
    try:
        yield
    except BaseException:
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: each trial stops cleanly, lost, resumable
        for process in processes:
            process.join()
        raise
