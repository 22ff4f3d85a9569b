"""Hook specifications: the whole plugin surface of eclsr.

Every hook receives a ``register`` callback. A plugin calls it once per component it provides,
passing the component's frozen pydantic config class. Built-in plugins use exactly these hooks.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

PROJECT_NAME = "eclsr"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

RegisterCallback = Callable[[type], None]


@hookspec
def eclsr_register_encoders(register: RegisterCallback) -> None:
    """Register user-behaviour encoders (sequence → hidden states).

    Args:
        register: call ``register(ConfigClass)`` for each encoder. ``ConfigClass`` subclasses
            ``eclsr.EncoderConfig``, has ``name: Literal["..."]`` and a ``build(ctx)`` method that
            returns an ``eclsr.Encoder`` module.
    """


@hookspec
def eclsr_register_augmentations(register: RegisterCallback) -> None:
    """Register mild (feature-level) and invasive (sequence-level) augmentations.

    Args:
        register: call ``register(ConfigClass)`` for each augmentation. ``ConfigClass`` subclasses
            ``eclsr.MildAugmentationConfig`` (its ``build(ctx)`` returns an
            ``eclsr.MildAugmentation``) or ``eclsr.InvasiveAugmentationConfig`` (its ``build(ctx)``
            returns an ``eclsr.InvasiveAugmentation``).
    """


@hookspec
def eclsr_register_heads(register: RegisterCallback) -> None:
    """Register heads: the objectives (next-item, InfoNCE, RID, generator, ...).

    Args:
        register: call ``register(ConfigClass)`` for each head. ``ConfigClass`` subclasses
            ``eclsr.HeadConfig`` and its ``build(ctx)`` returns an ``eclsr.Head`` module.
    """


@hookspec
def eclsr_register_readers(register: RegisterCallback) -> None:
    """Register data-file readers (formats such as CSV, RecBole ``.inter``, sequence files).

    Args:
        register: call ``register(ConfigClass)`` for each reader. ``ConfigClass`` subclasses
            ``eclsr.components.readers.ReaderConfig``.
    """
