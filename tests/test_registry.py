from __future__ import annotations

from typing import Literal

import pytest

from eclsr import HeadConfig, MildAugmentationConfig
from eclsr.errors import RegistryError
from eclsr.registry.table import Origin, Registry, component_name


class CropLike(MildAugmentationConfig):
    name: Literal["crop_like"] = "crop_like"


class Other(MildAugmentationConfig):
    name: Literal["crop_like"] = "crop_like"


class Nameless(HeadConfig):
    pass


def test_register_and_get():
    reg = Registry("mild augmentation")
    reg.register(CropLike, Origin("pkg_a", "dist-a", "1.0"))
    assert reg.get("crop_like") is CropLike
    assert "crop_like" in reg and len(reg) == 1
    assert list(reg) == [CropLike]


def test_duplicate_names_both_origins():
    reg = Registry("mild augmentation")
    reg.register(CropLike, Origin("pkg_a", "dist-a", "1.0"))
    with pytest.raises(RegistryError) as info:
        reg.register(Other, Origin("pkg_b", "dist-b", "2.0"))
    text = str(info.value)
    assert "pkg_a (dist-a 1.0)" in text and "pkg_b (dist-b 2.0)" in text


def test_unknown_name_lists_valid_and_close_matches():
    reg = Registry("mild augmentation")
    reg.register(CropLike, Origin("pkg_a"))
    with pytest.raises(RegistryError) as info:
        reg.get("crop_lik")
    assert "Did you mean 'crop_like'" in str(info.value)
    assert "Valid mild augmentation names: 'crop_like'" in str(info.value)


def test_class_without_name_literal_is_rejected():
    with pytest.raises(RegistryError, match="needs a field"):
        component_name(Nameless)


def test_every_registered_field_has_description_and_default(registries):
    for registry in registries.all():
        for cls in registry:
            for field_name, field in cls.model_fields.items():
                assert field.description or field_name == "name", (
                    f"{cls.__name__}.{field_name} lacks a description"
                )
                assert not field.is_required(), f"{cls.__name__}.{field_name} has no default"


def test_configs_are_frozen_and_forbid_extra(registries):
    cls = registries.mild.get("dropout")
    config = cls()
    with pytest.raises(Exception):
        config.name = "x"
    with pytest.raises(Exception):
        cls(unknown_field=1)
