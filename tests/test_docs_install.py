"""docs/plugins.md works for a pip user: its snippets, as written, become an installed package.

From the guide's own code blocks this test builds the Gaussian-noise package (the module of "A
component in one file" and the ``pyproject.toml`` of "Loading plugins"), installs it and eclsr
itself (not editable: a wheel built from a copy of the sources) into a temporary ``--target``
folder, and runs a fresh interpreter on that folder only, outside the source tree. It checks that
the component is listed with its distribution, that a recipe naming it validates and trains, and
that the guide's contract-test snippet passes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "plugins.md"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("pip") is None, reason="needs pip to install the packages"
)


def code_blocks(language: str) -> list[str]:
    """Every fenced block of ``language`` in the guide, in order."""
    pattern = re.compile(rf"^```{language}\n(.*?)^```", re.M | re.S)
    return pattern.findall(GUIDE.read_text(encoding="utf-8"))


def snippet(language: str, marker: str) -> str:
    """The one block of ``language`` that contains ``marker``."""
    found = [block for block in code_blocks(language) if marker in block]
    assert len(found) == 1, f"expected one ```{language} block with {marker!r}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def installed(
    tmp_path_factory: pytest.TempPathFactory, eclsr_wheel_site: Path, pip_install
) -> Path:
    """A work folder whose ``site/`` holds eclsr and the guide's package, both pip-installed."""
    work = tmp_path_factory.mktemp("docs-install")
    shutil.copytree(eclsr_wheel_site, work / "site")
    package = work / "eclsr-gaussian-noise"
    (package / "eclsr_gaussian_noise").mkdir(parents=True)
    module = snippet("python", "class GaussianNoiseConfig(MildAugmentationConfig)")
    (package / "eclsr_gaussian_noise" / "__init__.py").write_text(module)
    (package / "pyproject.toml").write_text(snippet("toml", "[project.entry-points.eclsr]"))
    pip_install(package, work / "site")
    return work


def run_python(work: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that sees only the installed folder (cwd: ``work``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECLSR_")}
    env["PYTHONPATH"] = str(work / "site")
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=work, capture_output=True, text=True,
        env=env, timeout=600,
    )  # fmt: skip


def test_eclsr_comes_from_the_installed_wheel_not_the_checkout(installed: Path):
    proc = run_python(installed, "import eclsr, eclsr.api; print(eclsr.__file__)")
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).is_relative_to(installed / "site")


def test_the_guides_package_is_listed_with_its_distribution(installed: Path):
    code = "from eclsr.cli import main; raise SystemExit(main(['plugins', '--json']))"
    proc = run_python(installed, code)
    assert proc.returncode == 0, proc.stderr
    (row,) = [row for row in json.loads(proc.stdout) if row["name"] == "gaussian_noise"]
    assert (row["kind"], row["intensity"]) == ("augmentation", "mild")
    assert (row["distribution"], row["version"]) == ("eclsr-gaussian-noise", "0.1.0")


def test_a_recipe_naming_it_validates_and_trains(installed: Path):
    (installed / "noise.toml").write_text(
        textwrap.dedent(
            """
            data = { dataset = "synthetic", max_len = 8, synthetic_users = 60, synthetic_items = 40, cache = false }
            encoder = { name = "sasrec", hidden = 16, layers = 1, heads = 1 }
            [[heads]]
            name = "next_item"
            [[heads]]
            name = "infonce"
            weight = 0.1
            view = { name = "gaussian_noise", sigma = 0.1 }
            [train]
            epochs = 1
            batch_size = 32
            device = "cpu"
            """
        )
    )
    code = """
        from eclsr.cli import main
        assert main(['validate', 'noise.toml']) == 0
        raise SystemExit(main(['run', 'noise.toml', '--out', 'run', '--no-progress']))
    """
    proc = run_python(installed, code)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (installed / "run" / "results.json").is_file()


def test_the_guides_contract_test_snippet_passes(installed: Path):
    test_code = snippet("python", "from eclsr.testing import check_mild_augmentation")
    proc = run_python(installed, test_code + "\ntest_contract()\nprint('contract ok')\n")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "contract ok" in proc.stdout
