"""The core (non-plugin) sections of a recipe: top level, training and evaluation."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from eclsr.components.configs import ComponentConfig

METRICS = ("recall", "ndcg", "mrr")
MONITOR_PATTERN = re.compile(r"^valid\.(recall|ndcg|mrr)@(\d+)$")


#: Largest seed: numpy's legacy seeding takes < 2**32 and torch's generators wrap beyond 2**63;
#: 2**31 - 1 leaves room for the rank (and other small offsets) added to it.
MAX_SEED = 2**31 - 1
#: More CPU threads than any machine has only makes torch fail or crawl.
MAX_THREADS = 1024


class _Section(BaseModel):
    # allow_inf_nan=False: inf/nan pass `gt=0` and similar checks, then poison training.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class JointSchedule(_Section):
    """Every head trains with every other loss from step 0 and none is ever frozen."""

    name: Literal["joint"] = "joint"

    def frozen_heads(self, epoch: int) -> frozenset[str]:
        """Head names that run without gradient (and add no loss) in ``epoch``: none."""
        return frozenset()


class FreezeAfterSchedule(_Section):
    """The paper's schedule: the listed heads (the generator) stop training after ``epochs``.

    A frozen head adds no loss; what it serves other heads (the generator's S'') is still
    computed, without gradient.
    """

    name: Literal["freeze_after"] = "freeze_after"
    epochs: int = Field(10, ge=0, description="Epochs after which the heads are frozen.")
    heads: list[str] = Field(
        default_factory=lambda: ["generator"],
        description="Registered names of the heads to freeze.",
    )

    def frozen_heads(self, epoch: int) -> frozenset[str]:
        """Head names that run without gradient (and add no loss) in ``epoch``."""
        return frozenset(self.heads) if epoch >= self.epochs else frozenset()


class TwoStageSchedule(_Section):
    """The authors' code's intended schedule.

    Train every loss to the first early stop, reload the best checkpoint, drop the heads listed in
    ``drop`` and continue to a second early stop.
    """

    name: Literal["two_stage"] = "two_stage"
    drop: list[str] = Field(
        default_factory=lambda: ["generator", "rid"],
        description="Head names whose losses are dropped in the second stage.",
    )

    def frozen_heads(self, epoch: int) -> frozenset[str]:
        """None by epoch; the dropped heads of stage 2 are frozen by the loop."""
        return frozenset()


Schedule = Annotated[
    Union[JointSchedule, FreezeAfterSchedule, TwoStageSchedule],  # noqa: UP007
    Field(discriminator="name"),
]


class ExamplesConfig(_Section):
    """How training rows are cut from each user's training history (the items before validation).

    A recipe field, not a registered component kind: the modes are index arithmetic the batching
    engine itself must understand (length bucketing, DDP sharding, bench, positions counted), and
    a plugin could not add one without those, so a closed, validated set is the honest interface.
    """

    mode: Literal["sequence", "prefixes", "windows"] = Field(
        "sequence",
        description="sequence: one row per user, its last max_len training items, next-item loss "
        "at every position (authors' Sports/Yelp code). prefixes: one row per training target, "
        "its last max_len earlier items, loss at the row's last position only (authors' Toys code, "
        "RecBole). windows: the whole history tiled into non-overlapping max_len chunks from the "
        "newest back, loss at every position (authors' ML-1m code).",
    )
    min_length: int = Field(
        1,
        ge=1,
        description="Fewest input items in a row. prefixes: shorter prefixes are dropped. "
        "windows: shorter older chunks are dropped (each user's newest chunk is always kept; the "
        "authors' ML-1m code keeps older chunks of more than 10 items, i.e. min_length = 11). "
        "sequence: must stay 1.",
    )

    @model_validator(mode="after")
    def _min_length_needs_a_mode(self) -> ExamplesConfig:
        if self.mode == "sequence" and self.min_length != 1:
            msg = (
                "examples.min_length applies to mode 'prefixes' or 'windows'; "
                "sequence keeps every user's row"
            )
            raise ValueError(msg)
        return self


class TrainConfig(_Section):
    """Optimisation, early stopping and engine switches."""

    epochs: int = Field(300, ge=0, description="Maximum epochs (per stage).")
    batch_size: int = Field(256, ge=1, description="Users per training batch.")
    lr: float = Field(1e-3, gt=0, description="Learning rate.")
    optimizer: Literal["adam", "adamw"] = Field("adam", description="Optimizer.")
    weight_decay: float = Field(0.0, ge=0, description="Weight decay (decoupled for adamw).")
    grad_clip: float | None = Field(
        None, gt=0, description="Clip the global grad norm; None = off."
    )
    patience: int = Field(10, ge=1, description="Epochs without improvement before stopping.")
    monitor: str = Field(
        "valid.recall@10", description="Metric for early stopping: valid.<recall|ndcg|mrr>@K."
    )
    schedule: Schedule = Field(default_factory=JointSchedule, description="Generator schedule.")
    examples: ExamplesConfig = Field(
        default_factory=ExamplesConfig, description="How training rows are built."
    )
    bucket_by_length: bool = Field(
        True,
        description="Batch rows of similar length (less padding, faster). With one sequence per "
        "user and per-batch means it also reweights the loss toward short histories' targets "
        "(on Sports −.0033 R@10 against random batches, one seed). The heads' average_over = "
        "'epoch' removes that reweighting; what bucketing does beyond it is not settled there "
        "(against random batches: +.0026 R@10 at 48 users a batch, one seed a side; about "
        "−.002 at 256, two seeds against one; results/protocol-grid/README.md). Every-prefix "
        "batches all hold the same number of next-item targets, and there bucketing costs "
        "nothing measurable (Sports SASRec, three seeds a side: −.0002 R@10, p .75).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to train.")
    threads: int | None = Field(
        None,
        ge=1,
        le=MAX_THREADS,
        description="CPU threads for torch; None = torch's default.",
    )
    amp: Literal["none", "bf16"] = Field(
        "none", description="bf16 autocast (GPU; measured on CPU)."
    )
    compile: bool = Field(False, description="Wrap the encoder in torch.compile.")
    tune_allocator: bool = Field(
        True,
        description="Stop glibc returning big blocks to the kernel every step (faster, ~10% more RSS).",
    )
    tensorboard: bool = Field(
        False,
        description="Also log every loss term and validation metric to TensorBoard (run_dir/tb).",
    )


class EvalConfig(_Section):
    """Full-ranking evaluation protocol (recorded with every result)."""

    ks: list[int] = Field(
        default_factory=lambda: [5, 10, 20], min_length=1, description="Cut-offs K."
    )
    exclude_seen: bool = Field(
        False,
        description="Exclude items already in the user's history from the ranking (the target is never "
        "excluded). The authors' code does not.",
    )
    ties: Literal["strict", "pessimistic"] = Field(
        "strict",
        description="strict: rank = 1 + #items scoring strictly higher; pessimistic: items tying "
        "with the target count as higher too.",
    )
    batch_size: int = Field(256, ge=1, description="Users per evaluation batch.")
    chunk_elements: int = Field(
        1 << 24, ge=1024, description="Most [users × items] scores held at once."
    )

    @model_validator(mode="after")
    def _positive_ks(self) -> EvalConfig:
        if any(k < 1 for k in self.ks):
            msg = f"every K must be >= 1, got {self.ks}"
            raise ValueError(msg)
        return self


class RecipeBase(_Section):
    """Top-level recipe fields; the component sections are added from the registries."""

    seed: int = Field(
        42,
        ge=0,
        le=MAX_SEED,
        description="Seed of every random generator (0 to 2**31 - 1: what torch and numpy accept, "
        "with room for the per-rank offsets added to it).",
    )
    name: str | None = Field(None, description="Run name; default: the recipe file's stem.")
    description: str = Field("", description="Free text.")
    plugins: list[str] = Field(
        default_factory=list,
        description="Extra plugin .py files to load (paths relative to the recipe).",
    )

    @model_validator(mode="after")
    def _cross_checks(self) -> RecipeBase:
        problems = list(_monitor_problems(self)) + list(_service_problems(self))
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _monitor_problems(recipe: RecipeBase) -> Iterator[str]:
    train: TrainConfig = recipe.train  # type: ignore[attr-defined]
    ks: list[int] = recipe.eval.ks  # type: ignore[attr-defined]
    match = MONITOR_PATTERN.match(train.monitor)
    if not match:
        yield f"train.monitor {train.monitor!r} must look like 'valid.recall@10' (metrics: {', '.join(METRICS)})"
    elif int(match.group(2)) not in ks:
        yield f"train.monitor uses K={match.group(2)} but eval.ks is {ks}; add it to eval.ks"


def _service_problems(recipe: RecipeBase) -> Iterator[str]:
    provided: set[str] = set()
    required: list[tuple[str, str]] = []
    for config in iter_components(recipe):
        provided.update(config.provides_services)
        required += [(s, config.name) for s in config.needed_services()]  # type: ignore[attr-defined]
    for service, who in required:
        if service not in provided:
            yield f"{who!r} needs a {service!r} head in `heads`; add [[heads]] name = {service!r}"


def iter_components(node: object) -> Iterator[ComponentConfig]:
    """Every component config nested anywhere in ``node`` (depth first)."""
    if isinstance(node, ComponentConfig):
        yield node
    if isinstance(node, BaseModel):
        for field_name in type(node).model_fields:
            yield from iter_components(getattr(node, field_name))
    elif isinstance(node, (list, tuple)):
        for item in node:
            yield from iter_components(item)
