"""The recipe schema: one pydantic model of a whole recipe, built from the registries.

Component fields are discriminated unions over every registered class of their kind (see
:mod:`eclsr.registry.slots`), so ``eclsr schema`` includes third-party fields and a wrong name is
reported with the valid ones.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, create_model

from eclsr.data.config import DataConfig
from eclsr.recipe.sections import EvalConfig, RecipeBase, TrainConfig
from eclsr.registry.manager import Registries
from eclsr.registry.slots import tagged_union


def build_recipe_model(regs: Registries) -> type[BaseModel]:
    """The pydantic model of a whole recipe with every installed plugin."""
    encoder_union = tagged_union(list(regs.encoders))
    head_union = tagged_union(list(regs.heads))
    data_section = create_model(
        "DataSection",
        __base__=DataConfig,
        reader=(
            tagged_union(list(regs.readers)) | None,
            Field(None, description=DataConfig.model_fields["reader"].description),
        ),
    )
    return create_model(
        "Recipe",
        __base__=RecipeBase,
        data=(
            data_section,
            Field(default_factory=data_section, description="Dataset and sequence length."),
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
