"""Shared fixtures: registries with slots resolved, the shared data folder, pip-installed eclsr."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def registries():
    from eclsr.registry.manager import collect_registries

    return collect_registries()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} not present")
    return SHARED_DATA


def _pip_install(source: Path, site: Path) -> None:
    """Build ``source`` offline with this venv's setuptools and install it into ``site``."""
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation"]
    command += ["--no-index", "--disable-pip-version-check", "--quiet", "--target", str(site)]
    proc = subprocess.run(
        [*command, str(source)], capture_output=True, text=True, timeout=600,
        env={**os.environ, "PIP_NO_INPUT": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, f"pip install {source} failed:\n{proc.stdout}\n{proc.stderr}"


@pytest.fixture(scope="session")
def pip_install() -> Callable[[Path, Path], None]:
    """``pip_install(source, site)``: a non-editable, offline install into a --target folder."""
    return _pip_install


@pytest.fixture(scope="session")
def eclsr_wheel_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A --target folder holding eclsr built from a copy of this checkout (not editable).

    Tests copy it (``shutil.copytree``) before adding packages of their own. Skipped where pip
    is missing.
    """
    import importlib.util

    if importlib.util.find_spec("pip") is None:
        pytest.skip("needs pip to install packages")
    work = tmp_path_factory.mktemp("eclsr-wheel")
    source = work / "eclsr-src"  # a copy, so no build/ or egg-info lands in the repository
    for name in ("core", "plugins"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    _pip_install(source, work / "site")
    return work / "site"
