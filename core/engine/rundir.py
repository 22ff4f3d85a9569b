"""The run directory: resolved recipe, plugin list, metrics, results, checkpoints.

Files are written atomically (temporary file, fsync, rename), so a crash never leaves a
half-written file that looks complete.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import platform
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from eclsr.errors import EclsrError

RESULTS = "results.json"
METRICS = "metrics.jsonl"
RECIPE = "recipe.yaml"
PLUGINS = "plugins.json"
BEST = "best.pt"
LOCK = ".eclsr.lock"
#: What an atomic write killed mid-way leaves behind (``.NAME.*.tmp``).
TEMPORARY = ".*.tmp"
#: Files whose loss would lose a user's work: never advise a command that deletes them.
PRECIOUS = (RESULTS, METRICS, BEST, "ranks.npz", "checkpoint-*.pt")
#: Files a run writes; --overwrite removes these (and nothing else) from a reused directory.
OWNED_FILES = (
    RESULTS,
    METRICS,
    RECIPE,
    PLUGINS,
    BEST,
    "ranks.npz",
    "checkpoint-*.pt",
    "checkpoints.json",
)


def default_run_dir(recipe_name: str) -> Path:
    """``runs/<recipe-name>/<UTC timestamp>``."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    return Path("runs") / recipe_name / stamp


def prepare_run_dir(path: Path, overwrite: bool) -> Path:
    """Create ``path``; refuse to reuse a non-empty directory unless ``overwrite``."""
    check_run_dir(path, overwrite)
    make_dirs(path)
    for stale in OWNED_FILES:  # --overwrite: a previous run's files must not mix with this one's
        for file in path.glob(stale):
            file.unlink()
    remove_stale_temporaries(path)
    return path


def check_run_dir(path: Path, overwrite: bool) -> None:
    """Raise if ``path`` cannot be used as a new run directory (nothing is created)."""
    if path.exists() and not path.is_dir():
        msg = f"--out {str(path)!r} is a file, not a directory. Choose another path."
        raise EclsrError(msg)
    if not path.is_dir() or overwrite:
        return
    try:
        names = [p.name for p in path.iterdir() if p.name != LOCK]
    except OSError as exc:
        raise output_error(path, exc) from None
    if not names:
        return
    precious = precious_files(path)
    if precious:
        msg = (
            f"run directory {str(path)!r} already holds a run's results ({', '.join(precious[:4])}). "
            "They are kept: choose another --out for a new run, or continue this one with "
            "`eclsr resume` / --resume."
        )
    else:
        msg = f"run directory {str(path)!r} already holds files ({', '.join(sorted(names)[:4])}). Choose another --out, or pass --overwrite to replace them."
    raise EclsrError(msg)


def check_restart(path: Path) -> None:
    """Raise unless ``path`` (being resumed, with no usable checkpoint) can start over safely.

    A run killed during its first epoch left only its recipe and an empty log: starting over
    loses nothing. When metrics, checkpoints or results are there, they are kept and the user is
    told to start the run fresh elsewhere; deleting them is never the advice.
    """
    precious = precious_files(path)
    if precious:
        msg = (
            f"--resume: {str(path)!r} has no usable checkpoint, but it holds a run's files "
            f"({', '.join(precious[:4])}); they are kept untouched. To train this recipe from "
            "the start, run it with another --out."
        )
        raise EclsrError(msg)


def precious_files(path: Path) -> list[str]:
    """Names of the files in ``path`` that hold a user's work (non-empty metrics, checkpoints...)."""
    found = []
    for pattern in PRECIOUS:
        for file in sorted(path.glob(pattern)):
            if file.is_file() and (file.name != METRICS or file.stat().st_size > 0):
                found.append(file.name)
    return found


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete the ``.NAME.*.tmp`` files an atomic write killed mid-way left behind.

    Only call this while holding the run directory's lock: a live writer's temporary file
    looks the same.
    """
    removed = []
    for file in path.glob(TEMPORARY):
        if file.is_file():
            file.unlink(missing_ok=True)
            removed.append(file)
    return removed


@contextlib.contextmanager
def locked(path: Path | None) -> Iterator[None]:
    """Hold an exclusive lock on run directory ``path`` (None: no lock) until the block ends.

    Two processes writing one run directory (two ``--resume`` at once) would interleave epochs
    and checkpoints; the second one is refused instead. The lock is an ``fcntl`` lock, so the
    kernel releases it when its process exits, even when killed.
    """
    if path is None:
        yield
        return
    import fcntl

    make_dirs(path)
    try:
        handle = (path / LOCK).open("a+")
    except OSError as exc:
        raise output_error(path / LOCK, exc) from None
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            msg = (
                f"run directory {str(path)!r} is in use by another eclsr process (it holds "
                f"{path / LOCK}). Wait for it to finish, or stop it first; two processes must not "
                "write one run."
            )
            raise EclsrError(msg) from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def output_error(path: Path, exc: OSError) -> EclsrError:
    """A located error for an output ``path`` that cannot be written, with the usual fixes."""
    reason = exc.strerror or str(exc)
    hints = {
        errno.ENOSPC: "the disk is full: free space or write elsewhere",
        errno.EROFS: "the file system is read-only: write elsewhere",
        errno.EACCES: "permission denied: write to a folder you own",
        errno.EPERM: "permission denied: write to a folder you own",
        errno.ENOTDIR: "a parent of it is a file, not a folder: choose another path",
        errno.EEXIST: "a file is in the way of a folder: choose another path",
    }
    hint = hints.get(exc.errno or 0, "choose another location")
    return EclsrError(f"cannot write {str(path)!r} ({reason}); {hint}.")


def make_dirs(path: Path) -> None:
    """``mkdir -p`` with a located error instead of an OSError traceback."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(path, exc) from None


def read_text(path: Path) -> str:
    """Text of a run-directory file; a located error when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"{str(path)!r} cannot be read ({getattr(exc, 'strerror', None) or exc}); check its permissions, or the run directory is damaged."
        raise EclsrError(msg) from None


def _mode_for(path: Path) -> int:
    """Permission bits ``path`` should get: an existing file's own, else what ``open`` would give.

    ``mkstemp`` creates its file 0600 whatever the umask, so without this every file eclsr
    writes (results, RESULTS.md) would end up readable by its owner alone, and rewriting a
    user's shared file would silently take away the group's access.
    """
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return 0o666 & ~_process_umask()


@functools.cache
def _process_umask() -> int:
    """The process's umask, read once: setting it is the only portable way to read it, and the
    moment it holds another value must not recur while other threads may be creating files."""
    umask = os.umask(0o077)
    os.umask(umask)
    return umask


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` via a temporary file in the same folder, fsync and rename."""
    make_dirs(path.parent)
    mode = _mode_for(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise output_error(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise output_error(path, exc) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def code_version(root: Path | None = None) -> dict[str, Any]:
    """The code that produced a result: eclsr's version, torch's, and the git commit if any.

    A number is only reproducible with the code that made it. When eclsr runs from a git
    checkout (an editable install, as in development), the commit and whether the package's
    tracked files differ from it are recorded; an installed wheel records its version only.
    ``root`` is the folder above the package: None means this process's own eclsr, looked up
    once per process (see ``_this_process_code``).
    """
    if root is None:
        return dict(_this_process_code())
    return _checkout_version(root)


@functools.cache
def _this_process_code() -> dict[str, Any]:
    """The running eclsr's version, read at the first run of this process and kept.

    A process runs the code it imported, however the checkout changes later: a tune worker that
    lives through a commit must not stamp its later runs with the newer commit (or a clean tree
    with the dirty flag). The first run comes right after the imports, so its reading stands for
    the process's code.
    """
    import eclsr

    return _checkout_version(Path(eclsr.__file__).resolve().parent.parent)


def _checkout_version(root: Path) -> dict[str, Any]:
    import eclsr

    version: dict[str, Any] = {"eclsr": eclsr.__version__, "torch": torch.__version__}
    commit = _git(root, "rev-parse", "HEAD")
    if commit:
        changed = _git(root, "status", "--porcelain", "--untracked-files=no")
        version |= {"git_commit": commit, "git_dirty": bool(changed)}
    return version


def _git(root: Path, *args: str) -> str | None:
    """``git -C root ARGS`` stdout, or None where git or the repository is missing."""
    if not (root / ".git").exists():
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def machine_description() -> dict[str, Any]:
    """CPU, cores, memory and library versions of this machine."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def write_json(path: Path, value: Any) -> None:
    """Atomically write ``value`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=False) + "\n").encode())


def write_recipe(path: Path, recipe: Any) -> None:
    """The resolved recipe as ``path`` (YAML, defaults filled in, fields in schema order)."""
    import yaml

    text = yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
    atomic_write_bytes(path, text.encode())


def append_jsonl(path: Path, value: Any) -> None:
    """Append one JSON line (flushed and fsynced)."""
    try:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(value) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise output_error(path, exc) from None


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Atomically save a state dict of tensors and plain values (loadable with weights_only)."""
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_state(path: Path) -> dict[str, Any]:
    """Load a checkpoint without unpickling code (``weights_only=True``)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        msg = f"checkpoint {str(path)!r} does not exist."
        raise EclsrError(msg) from None
    except PermissionError:
        msg = f"checkpoint {str(path)!r} cannot be read (permission denied); check its permissions."
        raise EclsrError(msg) from None
    except Exception as exc:  # truncated, corrupt or carrying code
        msg = f"checkpoint {str(path)!r} cannot be loaded safely ({_load_problem(exc)}). It is corrupt, truncated, or not an eclsr checkpoint; nothing in it was executed."
        raise EclsrError(msg) from None


def _load_problem(exc: Exception) -> str:
    """Why torch refused a file, in our words.

    torch's own message for a weights-only refusal advises re-running with ``weights_only=False``,
    which would execute whatever the file carries: that advice is never passed on.
    """
    text = str(exc)
    if "weights_only" in text or "Weights only" in text or "pickle" in type(exc).__name__.lower():
        return "it holds Python objects other than tensors and plain values, which are refused"
    return f"{type(exc).__name__}: {text.splitlines()[0][:200] if text else 'unreadable'}"
