"""Slots: the discriminated unions that nested component fields resolve to once plugins load.

Nested component fields are annotated with slot names (``MildSlot`` ...). Here they are bound to
discriminated unions over every registered class of their kind, so pydantic reports a wrong name
with the list of valid ones, and an invasive augmentation where a mild one belongs is rejected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field

if TYPE_CHECKING:
    from eclsr.registry.manager import Registries


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
