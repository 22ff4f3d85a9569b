"""The recipe schema, built from the registries once plugins are loaded.

Nested component fields are annotated with slot names (``MildSlot`` ...). Here they are bound to
discriminated unions over every registered class of their kind, so pydantic reports a wrong name
with the list of valid ones, and an invasive augmentation where a mild one belongs is rejected.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import BaseModel, Field, create_model

from eclsr.data_config import DataConfig
from eclsr.plugin_manager import Registries


def tagged_union(classes: list[type]) -> Any:
    """``Annotated[Union[...], Field(discriminator="name")]`` over ``classes``."""
    if not classes:
        return Annotated[None, Field(description="no component of this kind is registered")]
    return Annotated[Union[tuple(classes)], Field(discriminator="name")]  # noqa: UP007


def slot_namespace(regs: Registries) -> dict[str, Any]:
    """The unions each slot name stands for."""
    mild, invasive = list(regs.mild), list(regs.invasive)
    return {
        "EncoderSlot": tagged_union(list(regs.encoders)),
        "MildSlot": tagged_union(mild),
        "InvasiveSlot": tagged_union(invasive),
        "AugmentationSlot": tagged_union(mild + invasive),
    }


def resolve_slots(regs: Registries) -> None:
    """Rebuild every registered config class with its slots bound to the current unions."""
    namespace = slot_namespace(regs)
    for registry in regs.all():
        for cls in registry:
            cls.model_rebuild(force=True, _types_namespace=namespace)


def build_recipe_model(regs: Registries) -> type[BaseModel]:
    """The pydantic model of a whole recipe with every installed plugin."""
    from eclsr.train_config import EvalConfig, RecipeBase, TrainConfig

    encoder_union = tagged_union(list(regs.encoders))
    head_union = tagged_union(list(regs.heads))
    return create_model(
        "Recipe",
        __base__=RecipeBase,
        data=(
            DataConfig,
            Field(default_factory=DataConfig, description="Dataset and sequence length."),
        ),
        encoder=(encoder_union, Field(description="The user-behaviour encoder (UBE).")),
        heads=(
            list[head_union],
            Field(min_length=1, description="Objectives, each with a weight."),
        ),
        train=(
            TrainConfig,
            Field(default_factory=TrainConfig, description="Optimisation and early stopping."),
        ),
        eval=(EvalConfig, Field(default_factory=EvalConfig, description="Evaluation protocol.")),
    )


def recipe_model(regs: Registries) -> type[BaseModel]:
    """The recipe model for ``regs``, built once per registries object."""
    if regs.recipe_model is None:
        regs.recipe_model = build_recipe_model(regs)
    return regs.recipe_model
