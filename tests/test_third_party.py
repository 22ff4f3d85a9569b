"""A third-party package with one component of each kind, written against ``eclsr.api`` only.

The package (an encoder, a mild and an invasive augmentation, a head) is pip-installed, not
editable, into a temporary ``--target`` folder beside a wheel of eclsr itself; everything then runs
in fresh interpreters that see only that folder. It trains under ``--nproc 2`` (torchrun, gloo)
mixed with built-in heads, then the package is uninstalled and ``validate``, ``run``, ``resume``
and ``evaluate`` must each stop with exit 2 and a message that names what is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("pip") is None, reason="needs pip to install the packages"
)

PACKAGE = '''
"""Components of every kind, written from docs/plugins.md against eclsr.api only."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from eclsr.api import (
    AugmentedBatch, BuildContext, Encoder, EncoderConfig, Head, HeadConfig, InvasiveAugmentation,
    InvasiveAugmentationConfig, MildAugmentation, MildAugmentationConfig, Step, hookimpl,
    real_mask,
)


class RunningMeanConfig(EncoderConfig):
    """Causal running mean of item + position embeddings, then a Linear."""

    name: Literal["running_mean"] = "running_mean"

    def build(self, ctx: BuildContext) -> RunningMean:
        return RunningMean(ctx)


class RunningMean(Encoder):
    def __init__(self, ctx: BuildContext) -> None:
        super().__init__()
        self.hidden_size = ctx.hidden_size
        self.share_item_table(ctx.item_embedding)
        self.position = nn.Embedding(ctx.max_len, ctx.hidden_size)
        self.proj = nn.Linear(ctx.hidden_size, ctx.hidden_size)

    def forward(self, items: Tensor, lengths: Tensor, input_offset: Tensor | None = None) -> Tensor:
        width = items.size(1)
        x = self.item_embedding(items) + self.position(torch.arange(width, device=items.device))
        if input_offset is not None:
            x = x + input_offset
        count = torch.arange(1, width + 1, device=items.device, dtype=x.dtype).view(1, -1, 1)
        return torch.tanh(self.proj(x.cumsum(dim=1) / count))


class ScaleViewConfig(MildAugmentationConfig):
    """Rescale the hidden states by a random factor per row."""

    name: Literal["scale_view"] = "scale_view"
    spread: float = Field(0.1, gt=0, description="Factors are drawn from 1 ± spread.")

    def build(self, ctx: BuildContext) -> ScaleView:
        return ScaleView(self.spread)


class ScaleView(MildAugmentation):
    def __init__(self, spread: float) -> None:
        super().__init__()
        self.spread = spread

    def forward(self, step: Step, hidden: Tensor) -> Tensor:
        gen = step.generator
        u = torch.rand((hidden.size(0), 1, 1), generator=gen, device=gen.device)
        return hidden * (1 + self.spread * (2 * u.to(hidden.device) - 1))


class SwapFirstConfig(InvasiveAugmentationConfig):
    """Swap the two oldest items of every row with at least two (positions stay aligned)."""

    name: Literal["swap_first"] = "swap_first"
    positional_labels: ClassVar[bool] = True

    def build(self, ctx: BuildContext) -> SwapFirst:
        return SwapFirst()


class SwapFirst(InvasiveAugmentation):
    def forward(self, step: Step, items: Tensor, lengths: Tensor) -> AugmentedBatch:
        out = items.clone()
        two = lengths >= 2
        out[two, 0], out[two, 1] = items[two, 1], items[two, 0]
        replaced = (out != items) & real_mask(lengths, items.size(1))
        return AugmentedBatch(out, lengths.clone(), replaced)


class NormPenaltyConfig(HeadConfig):
    """Mean squared norm of the UBE's states (an unweighted scalar, as the docs say)."""

    name: Literal["norm_penalty"] = "norm_penalty"

    def build(self, ctx: BuildContext) -> NormPenalty:
        return NormPenalty()


class NormPenalty(Head):
    def forward(self, step: Step) -> Tensor:
        return step.hidden[step.batch.mask].pow(2).sum(-1).mean()


@hookimpl
def eclsr_register_encoders(register: Callable[[type], None]) -> None:
    register(RunningMeanConfig)


@hookimpl
def eclsr_register_augmentations(register: Callable[[type], None]) -> None:
    register(ScaleViewConfig)
    register(SwapFirstConfig)


@hookimpl
def eclsr_register_heads(register: Callable[[type], None]) -> None:
    register(NormPenaltyConfig)
'''

PYPROJECT = """
[project]
name = "eclsr-every-kind"
version = "0.2.0"
dependencies = ["eclsr"]

[project.entry-points.eclsr]
every_kind = "eclsr_every_kind"
"""

RECIPE = """
seed = 3
data = { dataset = "synthetic", max_len = 8, synthetic_users = 80, synthetic_items = 40, cache = false }
encoder = { name = "running_mean", hidden = 16 }
[[heads]]
name = "next_item"
[[heads]]
name = "infonce"
weight = 0.1
view = { name = "scale_view" }
[[heads]]
name = "rid"
weight = 0.1
augmentation = { name = "swap_first" }
[[heads]]
name = "norm_penalty"
weight = 0.01
[train]
epochs = 1
batch_size = 32
device = "cpu"
threads = 1
"""


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, eclsr_wheel_site: Path, pip_install) -> Path:
    """A folder whose ``site/`` holds eclsr and the package, both pip-installed."""
    work = tmp_path_factory.mktemp("third-party")
    shutil.copytree(eclsr_wheel_site, work / "site")
    package = work / "eclsr-every-kind"
    (package / "eclsr_every_kind").mkdir(parents=True)
    (package / "eclsr_every_kind" / "__init__.py").write_text(PACKAGE)
    (package / "pyproject.toml").write_text(PYPROJECT)
    pip_install(package, work / "site")
    (work / "recipe.toml").write_text(RECIPE)
    return work


def eclsr_cli(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m eclsr ARGS`` in a fresh interpreter that sees only the installed folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECLSR_")}
    env["PYTHONPATH"] = str(work / "site")
    return subprocess.run(
        [sys.executable, "-m", "eclsr", *args], cwd=work, capture_output=True, text=True,
        env=env, timeout=900,
    )  # fmt: skip


def test_every_kind_is_checked_and_trains_under_two_processes_then_uninstalling_is_explained(
    work: Path,
):
    listed = eclsr_cli(work, "plugins", "--json")
    assert listed.returncode == 0, listed.stderr
    ours = {r["name"]: r for r in json.loads(listed.stdout) if r["entry_point"] == "every_kind"}
    assert set(ours) == {"running_mean", "scale_view", "swap_first", "norm_penalty"}
    assert {r["distribution"] for r in ours.values()} == {"eclsr-every-kind"}

    contract = textwrap.dedent(
        """
        from eclsr.testing import check_component
        import eclsr_every_kind as pkg
        for cls in (pkg.RunningMeanConfig, pkg.ScaleViewConfig, pkg.SwapFirstConfig,
                    pkg.NormPenaltyConfig):
            check_component(cls)
        print("contracts ok")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(work / "site")}
    checked = subprocess.run(
        [sys.executable, "-c", contract], cwd=work, capture_output=True, text=True, env=env,
        timeout=600,
    )  # fmt: skip
    assert "contracts ok" in checked.stdout, checked.stdout + checked.stderr

    trained = eclsr_cli(work, "run", "recipe.toml", "--out", "run", "--nproc", "2", "--no-progress")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    results = json.loads((work / "run" / "results.json").read_text())
    assert results["world_size"] == 2
    assert trained.stderr.count("epoch   0") == 1  # one epoch line, not one per process

    for entry in (work / "site").iterdir():  # uninstall the package
        if entry.name.startswith("eclsr_every_kind"):
            shutil.rmtree(entry)
    for args in (
        ("validate", "recipe.toml"),
        ("run", "recipe.toml", "--out", "run2"),
        ("resume", "run"),
        ("evaluate", "run"),
    ):
        proc = eclsr_cli(work, *args)
        assert proc.returncode == 2, f"{args}: {proc.stdout}{proc.stderr}"
        assert "Traceback" not in proc.stderr
        message = " ".join(proc.stderr.split())
        assert "running_mean" in message, f"{args}: {message}"
        if args[0] in ("resume", "evaluate"):  # the run directory knows where it came from
            assert "eclsr-every-kind" in message, f"{args}: {message}"
