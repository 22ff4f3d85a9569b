"""The example third-party package examples/eclsr-shuffle-aug, installed for real and offline.

Once per module the example is copied to a temporary folder (so no build/ or egg-info lands in
the repository) and installed with ``pip install --no-deps --no-build-isolation --no-index
--target SITE``: no network, and nothing written into the running venv. The CLI then runs as a
subprocess with ``PYTHONPATH=SITE``, so the package's entry point is visible there only.

``--no-build-isolation`` builds with the venv's own setuptools, which needs setuptools >= 77: the
example's ``license = "MIT"`` (an SPDX string, PEP 639) is refused by older ones. A bare ``python -m
venv`` on Python 3.11 has setuptools 65; there the test installs the same files by hand (the
package plus the dist-info pip would write: METADATA and entry_points.txt, read from the
example's pyproject).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "eclsr-shuffle-aug"
RECIPE = EXAMPLE / "recipe.toml"
ENV_SWITCHES = ("ECLSR_DISABLE_PLUGIN_AUTOLOAD", "ECLSR_DISABLED_PLUGINS")

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("pip") is None,
    reason="pip is not installed in this environment, so the example package cannot be installed",
)


def _venv_can_build_wheels() -> bool:
    """True when the venv's setuptools can build the example without build isolation (offline)."""
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return False
    major, minor = (int(p) for p in version.split(".")[:2])
    return (major, minor) >= (77, 0)  # the SPDX license string; bdist_wheel is built in since 70.1


def _install_with_pip(source: Path, site: Path) -> None:
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation"]
    command += ["--no-index", "--disable-pip-version-check", "--quiet", "--target", str(site)]
    env = {**os.environ, "PIP_NO_INPUT": "1"}
    proc = subprocess.run(
        [*command, str(source)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, f"pip install failed:\n{proc.stdout}\n{proc.stderr}"


def _install_by_hand(source: Path, site: Path) -> None:
    """What pip would install: the package and a dist-info with METADATA and entry points."""
    project = tomllib.loads((source / "pyproject.toml").read_text())["project"]
    name, version = project["name"], project["version"]
    package = name.replace("-", "_")
    shutil.copytree(source / package, site / package)
    dist_info = site / f"{package}-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    )
    lines = ["[eclsr]"] + [f"{k} = {v}" for k, v in project["entry-points"]["eclsr"].items()]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the installed example package (put it on PYTHONPATH to use it)."""
    tmp = tmp_path_factory.mktemp("shuffle-aug")
    source, site = tmp / "source", tmp / "site"
    shutil.copytree(
        EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    if _venv_can_build_wheels():
        _install_with_pip(source, site)
    else:
        warnings.warn(
            "setuptools < 77: installed the example by hand instead of pip",
            stacklevel=1,
        )
        site.mkdir()
        _install_by_hand(source, site)
    assert (site / "eclsr_shuffle_aug" / "__init__.py").is_file()
    return site


def eclsr_cli(
    site: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m eclsr ARGS`` with the example on PYTHONPATH and the switches in ``env`` only."""
    base = {k: v for k, v in os.environ.items() if k not in ENV_SWITCHES}
    paths = [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
    full = {**base, "PYTHONPATH": os.pathsep.join(paths), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "eclsr", *args],
        capture_output=True,
        text=True,
        env=full,
        cwd=ROOT,
        timeout=300,
    )


def _rows(proc: subprocess.CompletedProcess[str]) -> dict[str, dict]:
    assert proc.returncode == 0, proc.stderr
    return {row["name"]: row for row in json.loads(proc.stdout)}


def test_plugins_lists_shuffle_with_its_distribution(site):
    row = _rows(eclsr_cli(site, "plugins", "--json"))["shuffle"]
    assert row["kind"] == "augmentation"
    assert row["intensity"] == "invasive"
    assert row["distribution"] == "eclsr-shuffle-aug"
    assert row["version"] == "0.1.0"
    assert row["plugin"] == "eclsr_shuffle_aug"


def test_recipe_using_shuffle_validates(site):
    proc = eclsr_cli(site, "validate", str(RECIPE))
    assert proc.returncode == 0, proc.stderr
    assert "valid" in proc.stdout


@pytest.mark.parametrize(
    "switch",
    [{"ECLSR_DISABLE_PLUGIN_AUTOLOAD": "1"}, {"ECLSR_DISABLED_PLUGINS": "shuffle"}],
    ids=["autoload-disabled", "blocked-by-name"],
)
def test_switched_off_plugin_makes_the_recipe_invalid(site, switch):
    proc = eclsr_cli(site, "validate", str(RECIPE), env=switch)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    # both places that use it are reported, each with the valid choices of its slot
    assert "heads[1].view.name: unknown name 'shuffle'" in proc.stderr
    assert "heads[2].augmentation.name: unknown name 'shuffle'" in proc.stderr
    assert proc.stderr.count("Valid choices:") == 2
    assert "reorder" in proc.stderr and "dropout" in proc.stderr


def test_one_epoch_run_with_the_plugin(site, tmp_path):
    overrides = [
        "train.epochs=1",
        "train.threads=1",
        "data.synthetic_users=40",
        "data.synthetic_items=30",
        "data.max_len=10",
        "data.cache=false",
        "encoder.hidden=16",
        "encoder.inner_size=32",
    ]
    args = [arg for o in overrides for arg in ("--set", o)]
    proc = eclsr_cli(site, "run", str(RECIPE), *args, "--out", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr
    recorded = json.loads((tmp_path / "run" / "plugins.json").read_text())
    assert {"name": "shuffle", "distribution": "eclsr-shuffle-aug"}.items() <= next(
        row for row in recorded if row["name"] == "shuffle"
    ).items()
    assert (tmp_path / "run" / "results.json").is_file()


@pytest.fixture
def shuffle_module(site, monkeypatch):
    """The example module imported in this process (the plugin manager is built before)."""
    from eclsr.registry.manager import collect_registries

    collect_registries()  # cached without the example, so it cannot leak into other tests
    monkeypatch.syspath_prepend(str(site))
    module = importlib.import_module("eclsr_shuffle_aug")
    yield module
    sys.modules.pop("eclsr_shuffle_aug", None)


def test_shuffle_passes_the_contract(shuffle_module):
    from eclsr.testing import check_invasive_augmentation

    check_invasive_augmentation(shuffle_module.ShuffleConfig)


def test_shuffle_permutes_each_row_and_labels_changes(shuffle_module):
    from eclsr import real_mask
    from eclsr.testing import TinyCausalEncoder, tiny_batch, tiny_context, tiny_step

    ctx = tiny_context()
    batch = tiny_batch(lengths=(8, 1, 2, 6, 8), seed=3)
    step = tiny_step(ctx, TinyCausalEncoder(ctx), batch, seed=5)
    out = shuffle_module.ShuffleConfig().build(ctx)(step, batch.items, batch.lengths)
    real = real_mask(batch.lengths, batch.items.size(1))
    assert torch.equal(out.lengths, batch.lengths)
    assert torch.equal(out.items.sort(dim=1).values, batch.items.sort(dim=1).values)
    assert not out.items[~real].any()
    assert torch.equal(out.replaced, (out.items != batch.items) & real)
    assert not out.replaced[1].any()  # a single item has nowhere to go
    assert out.replaced.any()


def test_hand_install_fallback_matches_pip(site, tmp_path):
    """The by-hand install (used where the venv cannot build wheels) exposes the same metadata."""
    _install_by_hand(EXAMPLE, tmp_path)
    (by_hand,) = importlib.metadata.distributions(path=[str(tmp_path)])
    (installed,) = importlib.metadata.distributions(path=[str(site)])
    for dist in (by_hand, installed):
        assert (dist.metadata["Name"], dist.version) == ("eclsr-shuffle-aug", "0.1.0")
        (entry,) = dist.entry_points.select(group="eclsr")
        assert (entry.name, entry.value) == ("shuffle", "eclsr_shuffle_aug")
