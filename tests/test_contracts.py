"""Contract tests over every registered component (timm's test_models idea), via eclsr.testing.

A component is checked the moment its plugin registers it: no list to keep up to date. The second
half feeds deliberately broken components to the checks to show each rule really bites.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import pytest
import torch
from pydantic import Field
from torch import Tensor, nn

import eclsr
from eclsr import testing
from eclsr.registry.manager import collect_registries

REGS = collect_registries()
CHECKS = {  # registry kind → (test id prefix, check)
    "encoder": ("encoder", testing.check_encoder),
    "mild augmentation": ("mild", testing.check_mild_augmentation),
    "invasive augmentation": ("invasive", testing.check_invasive_augmentation),
    "head": ("head", testing.check_head),
}
REGISTERED = [
    pytest.param(CHECKS[registry.kind][1], entry.cls, id=f"{CHECKS[registry.kind][0]}-{entry.name}")
    for registry in (REGS.encoders, REGS.mild, REGS.invasive, REGS.heads)
    for entry in registry.entries()
]


def test_every_kind_has_components():
    assert {p.id.split("-")[0] for p in REGISTERED} == {prefix for prefix, _ in CHECKS.values()}


@pytest.mark.parametrize(("check", "config_cls"), REGISTERED)
def test_registered_component_contract(check, config_cls):
    check(config_cls)


def _variant(registry, name: str, **fields):
    if name not in registry:
        pytest.skip(f"{name!r} is not registered")
    return registry.get(name)(**fields)


VARIANTS = [
    ("heads", "rid", {"condition": "concat"}),
    ("heads", "rid", {"augmentation": {"name": "random_substitution"}}),
    ("heads", "aug_prediction", {"condition": "none"}),
    ("heads", "infonce", {"view": {"name": "crop"}, "augment_both": True}),
    ("heads", "infonce", {"view": {"name": "perturb"}, "symmetric": True}),
    ("heads", "generator", {"encoder": {"name": "sasrec", "layers": 1}}),
    ("encoders", "sasrec", {"hidden": 8, "layers": 1}),
    ("encoders", "bert4rec", {"hidden": 12, "heads": 3}),
]


@pytest.mark.parametrize(
    ("registry", "name", "fields"), VARIANTS, ids=[f"{n}-{sorted(f)}" for _, n, f in VARIANTS]
)
def test_configured_variant_contract(registry, name, fields):
    testing.check_component(_variant(getattr(REGS, registry), name, **fields))


def test_heads_can_run_on_a_registered_encoder():
    """The stand-in UBE is the default; a real one can be passed instead."""
    sasrec = _variant(REGS.encoders, "sasrec", hidden=8, layers=1)
    testing.check_head(_variant(REGS.heads, "rid"), encoder=sasrec)
    testing.check_mild_augmentation(_variant(REGS.mild, "dropout"), encoder=sasrec)


def test_checks_leave_the_global_rng_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    testing.check_invasive_augmentation(_variant(REGS.invasive, "crop"))
    torch.testing.assert_close(torch.rand(3), expected, rtol=0, atol=0)


def test_tiny_batch_is_right_padded():
    batch = testing.tiny_batch()
    assert batch.items.shape == (4, testing.MAX_LEN)
    assert not batch.items[~batch.mask].any() and (batch.items[batch.mask] > 0).all()
    assert torch.equal(
        batch.targets[:, :-1][batch.mask[:, 1:]], batch.items[:, 1:][batch.mask[:, 1:]]
    )


def test_services_are_provided_by_a_registered_head():
    if "generator" not in REGS.heads or "masked_substitution" not in REGS.invasive:
        pytest.skip("needs the generator head and masked_substitution")
    ctx = testing.tiny_context()
    config = REGS.invasive.get("masked_substitution")()
    built = testing.provide_services(config, ctx)
    assert len(built) == 1 and ctx.services["generator"] is built[0]


# --------------------------------------------------------------------------- broken components


class Identity(eclsr.InvasiveAugmentation):
    def forward(self, step, items, lengths):
        return eclsr.AugmentedBatch(items.clone(), lengths.clone(), None)


class GoodConfig(eclsr.InvasiveAugmentationConfig):
    """Identity: passes every rule."""

    name: Literal["good"] = "good"

    def build(self, ctx):
        return Identity()


class DirtyPadding(eclsr.InvasiveAugmentation):
    def forward(self, step, items, lengths):
        return eclsr.AugmentedBatch(items.masked_fill(items == 0, 3), lengths, None)


class GlobalRandom(eclsr.InvasiveAugmentation):
    def forward(self, step, items, lengths):
        keep = torch.rand(items.shape) < 0.5  # global RNG: forbidden
        real = eclsr.real_mask(lengths, items.size(1))
        return eclsr.AugmentedBatch(torch.where(keep | ~real, items, 1), lengths, keep & real)


class LabelsAtPadding(eclsr.InvasiveAugmentation):
    def forward(self, step, items, lengths):
        return eclsr.AugmentedBatch(
            items.clone(), lengths, torch.ones_like(items, dtype=torch.bool)
        )


class TooLong(eclsr.InvasiveAugmentation):
    def forward(self, step, items, lengths):
        return eclsr.AugmentedBatch(torch.cat([items, items], dim=1), lengths * 2, None)


class InPlace(eclsr.InvasiveAugmentation):
    def forward(self, step, items, lengths):
        items[:, 0] = 1
        return eclsr.AugmentedBatch(items, lengths, None)


def _invasive(module_cls, positional: bool = False):
    class Config(eclsr.InvasiveAugmentationConfig):
        """Broken on purpose."""

        name: Literal["broken"] = "broken"
        positional_labels: ClassVar[bool] = positional

        def build(self, ctx):
            return module_cls()

    return Config


class WrongLabels(eclsr.InvasiveAugmentation):
    """Moves items but labels nothing as replaced."""

    def forward(self, step, items, lengths):
        real = eclsr.real_mask(lengths, items.size(1))
        moved = torch.where(real, items.roll(1, dims=1).clamp(min=1), 0)
        return eclsr.AugmentedBatch(moved, lengths, torch.zeros_like(real))


@pytest.mark.parametrize(
    ("module_cls", "message", "positional"),
    [
        (DirtyPadding, "padding positions must stay 0", False),
        (GlobalRandom, "global seed", True),
        (LabelsAtPadding, "replaced must be False at padding", True),
        (TooLong, r"outside \[1, max_len", False),
        (InPlace, "modified in place", False),
        (WrongLabels, "wrong 'replaced' labels", True),
        (WrongLabels, "declares positional_labels = False", False),
        (Identity, "declares positional_labels = True, so it must", True),
    ],
)
def test_broken_invasive_augmentation_fails(module_cls, message, positional):
    with pytest.raises(AssertionError, match=message):
        testing.check_invasive_augmentation(_invasive(module_cls, positional))


def test_identity_invasive_augmentation_passes():
    testing.check_invasive_augmentation(GoodConfig)
    testing.check_component(GoodConfig())


class UndocumentedConfig(GoodConfig):
    """A field without a description."""

    name: Literal["undocumented"] = "undocumented"
    ratio: float = 0.5


class NoDefaultConfig(GoodConfig):
    """A required field."""

    name: Literal["no_default"] = "no_default"
    ratio: float = Field(description="No default.")


class NoNameConfig(eclsr.InvasiveAugmentationConfig):
    """No name literal."""


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (UndocumentedConfig, "fields without a description: ratio"),
        (NoDefaultConfig, "defaults are not valid"),
        (NoNameConfig, "needs a field `name"),
    ],
)
def test_config_rules(config, message):
    with pytest.raises(AssertionError, match=message):
        testing.check_invasive_augmentation(config)


def test_wrong_kind_is_reported():
    with pytest.raises(AssertionError, match="must subclass eclsr.HeadConfig"):
        testing.check_head(GoodConfig)


class DetachedEncoder(eclsr.Encoder):
    def __init__(self, ctx):
        super().__init__()
        self.hidden_size = ctx.hidden_size
        self.table = (ctx.item_embedding,)
        self.proj = nn.Linear(ctx.hidden_size, ctx.hidden_size)

    def forward(self, items, lengths, input_offset=None):
        x = self.table[0](items).detach()
        return self.proj(x if input_offset is None else x + input_offset)


class LeakyEncoder(DetachedEncoder):
    """Every position sees the mean over the whole row, padding included."""

    def forward(self, items, lengths, input_offset=None):
        x = self.table[0](items)
        x = x if input_offset is None else x + input_offset
        return self.proj(x + x.mean(dim=1, keepdim=True))


def _encoder(module_cls):
    class Config(eclsr.EncoderConfig):
        """Broken on purpose."""

        name: Literal["broken_encoder"] = "broken_encoder"

        def build(self, ctx):
            return module_cls(ctx)

    return Config


@pytest.mark.parametrize(
    ("module_cls", "message"),
    [
        (DetachedEncoder, "gradient"),
        (LeakyEncoder, "extra padding columns changed the states"),
    ],
)
def test_broken_encoder_fails(module_cls, message):
    with pytest.raises(AssertionError, match=message):
        testing.check_encoder(_encoder(module_cls))


class NaNHead(eclsr.Head):
    def forward(self, step):
        return step.hidden.sum() * float("nan")


class VectorHead(eclsr.Head):
    def forward(self, step):
        return step.hidden.sum(dim=(1, 2))


class NeedsOracleHead(eclsr.Head):
    def forward(self, step):
        return step.hidden.sum()


def _head(module_cls, services=()):
    class Config(eclsr.HeadConfig):
        """Broken on purpose."""

        name: Literal["broken_head"] = "broken_head"
        requires_services: ClassVar[tuple[str, ...]] = services

        def build(self, ctx):
            return module_cls()

    return Config


@pytest.mark.parametrize(
    ("head", "message"),
    [
        (_head(NaNHead), "not finite"),
        (_head(VectorHead), "floating scalar tensor"),
        (_head(NeedsOracleHead, ("oracle",)), "no registered head provides it"),
    ],
)
def test_broken_head_fails(head, message):
    with pytest.raises(AssertionError, match=message):
        testing.check_head(head)


def test_component_exceptions_become_assertions():
    class Crashing(eclsr.MildAugmentation):
        def forward(self, step, hidden: Tensor) -> Tensor:
            raise RuntimeError("boom")

    class CrashingConfig(eclsr.MildAugmentationConfig):
        """Raises."""

        name: Literal["crashing"] = "crashing"

        def build(self, ctx):
            return Crashing()

    with pytest.raises(AssertionError, match=r"augmentation 'crashing'.*raised RuntimeError: boom"):
        testing.check_mild_augmentation(CrashingConfig)


# --------------------------------------------------------------------------- broken encoders / views


class IgnoresOffset(testing.TinyCausalEncoder):
    def forward(self, items, lengths, input_offset=None):
        return super().forward(items, lengths, None)


class OwnsTheTable(testing.TinyCausalEncoder):
    def __init__(self, ctx):
        super().__init__(ctx)
        self.table = ctx.item_embedding  # a submodule: saved twice, frozen with the encoder


@pytest.mark.parametrize(
    ("module_cls", "message"),
    [
        (IgnoresOffset, "input_offset is ignored"),
        (OwnsTheTable, "registered as the encoder's submodule"),
    ],
)
def test_encoder_mistakes_are_caught(module_cls, message):
    testing.check_encoder(_encoder(testing.TinyCausalEncoder))  # the unbroken one passes
    with pytest.raises(AssertionError, match=message):
        testing.check_encoder(_encoder(module_cls))


class GlobalNoiseView(eclsr.MildAugmentation):
    def forward(self, step, hidden):
        return hidden + 0.1 * torch.randn(hidden.shape)  # global RNG: forbidden


class GlobalNoiseConfig(eclsr.MildAugmentationConfig):
    """Broken on purpose."""

    name: Literal["global_noise"] = "global_noise"

    def build(self, ctx):
        return GlobalNoiseView()


def test_a_view_drawing_from_the_global_rng_fails():
    with pytest.raises(AssertionError, match="global seed"):
        testing.check_mild_augmentation(GlobalNoiseConfig)


class ScalarHead(eclsr.Head):
    """Returns an unweighted 0-d loss, exactly as the guide shows."""

    def forward(self, step):
        return step.hidden[step.batch.mask].pow(2).mean()


class ScalarHeadConfig(eclsr.HeadConfig):
    """A head written from the docs alone."""

    name: Literal["scalar_head"] = "scalar_head"

    def build(self, ctx):
        return ScalarHead()


def test_a_docs_style_head_adds_up_with_built_ins_under_two_processes(registries):
    from eclsr.components.step import MirroredRanks
    from eclsr.engine.model import Model, total_loss

    testing.check_head(ScalarHeadConfig)  # includes the simulated --nproc 2 path
    recipe = eclsr.validate_recipe(
        {
            "data": {"dataset": "synthetic", "max_len": 8},
            "encoder": {"name": "sasrec", "hidden": 16, "layers": 1, "heads": 1},
            "heads": [{"name": "next_item"}],
        }
    )
    model = Model(recipe, testing.NUM_ITEMS, torch.ones(testing.NUM_ITEMS + 1))
    model.heads.append(ScalarHead())
    model.head_configs.append(ScalarHeadConfig())
    model.head_names.append("scalar_head")
    batch = testing.tiny_batch()
    step = eclsr.Step(batch, model.encoder, model.item_embedding, testing.NUM_ITEMS,
                      torch.Generator(), world_size=2, collectives=MirroredRanks(2))  # fmt: skip
    losses = model.losses(step)
    assert set(losses) == {"next_item", "scalar_head"}
    assert total_loss(losses).dim() == 0


class TwoTermHead(eclsr.Head):
    """Returns a dict of two named losses."""

    def forward(self, step):
        states = step.hidden[step.batch.mask]
        return {"norm": states.pow(2).mean(), "mean": states.mean().abs()}


class TwoTermConfig(eclsr.HeadConfig):
    """Two named terms under one weight."""

    name: Literal["two_terms"] = "two_terms"

    def build(self, ctx):
        return TwoTermHead()


def test_dict_losses_are_named_head_dot_key_and_the_weight_scales_each(registries):
    from eclsr.engine.model import Model, total_loss

    recipe = eclsr.validate_recipe(
        {
            "data": {"dataset": "synthetic", "max_len": 8},
            "encoder": {"name": "sasrec", "hidden": 16, "layers": 1, "heads": 1},
            "heads": [{"name": "next_item", "weight": 0}],
        }
    )
    model = Model(recipe, testing.NUM_ITEMS, torch.ones(testing.NUM_ITEMS + 1))
    model.heads.append(TwoTermHead())
    model.head_configs.append(TwoTermConfig(weight=0.5))
    model.head_names.append("two_terms")
    step = eclsr.Step(
        testing.tiny_batch(), model.encoder, model.item_embedding, testing.NUM_ITEMS,
        torch.Generator(),
    )  # fmt: skip
    losses = model.losses(step)
    assert set(losses) == {"two_terms.norm", "two_terms.mean"}
    assert all(weight == 0.5 for weight, _ in losses.values())
    expected = 0.5 * (losses["two_terms.norm"][1] + losses["two_terms.mean"][1])
    torch.testing.assert_close(total_loss(losses), expected)
