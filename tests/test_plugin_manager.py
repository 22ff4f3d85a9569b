from __future__ import annotations

import importlib.metadata
import sys
import types
from typing import Literal

import pluggy
import pytest

import eclsr
from eclsr import InvasiveAugmentationConfig, MildAugmentationConfig
from eclsr.errors import PluginError, RegistryError
from eclsr.registry.manager import build_registries, load_plugin_file, new_plugin_manager


def test_builtins_registered_through_hooks():
    pm = new_plugin_manager(autoload=False)
    names = {pm.get_name(p) for p in pm.get_plugins()}
    assert "eclsr.plugins.encoders.sasrec" in names
    regs = build_registries(pm)
    assert "sasrec" in regs.encoders and "dropout" in regs.mild and "crop" in regs.invasive
    assert "rid" in regs.heads


def test_blocking_by_env(monkeypatch):
    monkeypatch.setenv("ECLSR_DISABLED_PLUGINS", "eclsr.plugins.augment.crop")
    regs = build_registries(new_plugin_manager(autoload=False))
    assert "crop" not in regs.invasive and "reorder" in regs.invasive


class _FakeDist:
    """A stand-in distribution exposing one eclsr entry point (pluggy's own testing approach)."""

    def __init__(self, module_name: str, dist_name: str) -> None:
        self.metadata = {"name": dist_name}
        self.version = "9.9"
        self.entry_points = [
            importlib.metadata.EntryPoint(name="fake", value=module_name, group="eclsr")
        ]
        self._normalized_name = dist_name


def _fake_plugin_module(name: str, aug_name: str) -> types.ModuleType:
    module = types.ModuleType(name)

    class FakeAug(MildAugmentationConfig):
        name: Literal[aug_name] = aug_name  # type: ignore[valid-type]

    @eclsr.hookimpl
    def eclsr_register_augmentations(register):
        register(FakeAug)

    module.eclsr_register_augmentations = eclsr_register_augmentations
    module.FakeAug = FakeAug
    return module


@pytest.fixture
def fake_entry_point(monkeypatch):
    module = _fake_plugin_module("fake_eclsr_plugin", "fake_mild")
    monkeypatch.setitem(sys.modules, "fake_eclsr_plugin", module)
    monkeypatch.setattr(
        importlib.metadata, "distributions", lambda: [_FakeDist("fake_eclsr_plugin", "fake-dist")]
    )
    return module


def test_entry_point_plugins_load_with_origin(fake_entry_point):
    pm = new_plugin_manager(autoload=True)
    regs = build_registries(pm)
    entry = next(e for e in regs.mild.entries() if e.name == "fake_mild")
    assert entry.origin.distribution == "fake-dist" and entry.origin.version == "9.9"


def test_autoload_switch(fake_entry_point, monkeypatch):
    monkeypatch.setenv("ECLSR_DISABLE_PLUGIN_AUTOLOAD", "1")
    regs = build_registries(new_plugin_manager())
    assert "fake_mild" not in regs.mild


def test_block_entry_point_by_name(fake_entry_point, monkeypatch):
    monkeypatch.setenv("ECLSR_DISABLED_PLUGINS", "fake")
    regs = build_registries(new_plugin_manager(autoload=True))
    assert "fake_mild" not in regs.mild


def test_block_entry_point_by_the_module_name_eclsr_plugins_shows(fake_entry_point, monkeypatch):
    regs = build_registries(new_plugin_manager(autoload=True))
    entry = next(e for e in regs.mild.entries() if e.name == "fake_mild")
    assert (entry.origin.plugin, entry.origin.entry_point) == ("fake_eclsr_plugin", "fake")
    monkeypatch.setenv("ECLSR_DISABLED_PLUGINS", "fake_eclsr_plugin")
    regs = build_registries(new_plugin_manager(autoload=True))
    assert "fake_mild" not in regs.mild


def test_blocking_an_unknown_name_is_an_error_not_a_no_op(fake_entry_point, monkeypatch):
    monkeypatch.setenv("ECLSR_DISABLED_PLUGINS", "fake,no_such_plugin")
    with pytest.raises(eclsr.PluginError, match="'no_such_plugin', which is no installed plugin"):
        new_plugin_manager(autoload=True)


def test_duplicate_from_third_party_names_both(monkeypatch):
    module = _fake_plugin_module("dup_plugin", "dropout")
    monkeypatch.setitem(sys.modules, "dup_plugin", module)
    monkeypatch.setattr(
        importlib.metadata, "distributions", lambda: [_FakeDist("dup_plugin", "dup-dist")]
    )
    with pytest.raises(RegistryError) as info:
        build_registries(new_plugin_manager(autoload=True))
    assert "eclsr.plugins.augment.dropout" in str(info.value) and "dup-dist" in str(info.value)


def test_check_pending_rejects_misspelled_hook():
    pm = new_plugin_manager(autoload=False)
    module = types.ModuleType("typo_plugin")

    @eclsr.hookimpl
    def eclsr_register_augmentation(register):  # missing the final "s"
        pass

    module.eclsr_register_augmentation = eclsr_register_augmentation
    pm.register(module, name="typo_plugin")
    from eclsr.registry.manager import _check_pending

    with pytest.raises(PluginError, match="eclsr_register_augmentations"):
        _check_pending(pm)


def test_wrong_class_for_hook_is_rejected():
    pm = pluggy.PluginManager("eclsr")
    from eclsr.registry import hookspecs

    pm.add_hookspecs(hookspecs)
    module = types.ModuleType("wrong_kind")

    class NotAHead(InvasiveAugmentationConfig):
        name: Literal["not_a_head"] = "not_a_head"

    @eclsr.hookimpl
    def eclsr_register_heads(register):
        register(NotAHead)

    module.eclsr_register_heads = eclsr_register_heads
    pm.register(module)
    with pytest.raises(PluginError, match="subclasses of eclsr.HeadConfig"):
        build_registries(pm)


def test_plugin_file(tmp_path):
    file = tmp_path / "my_aug.py"
    file.write_text(
        "from typing import Literal\n"
        "import eclsr\n"
        "class Mine(eclsr.MildAugmentationConfig):\n"
        "    '''A file plugin.'''\n"
        "    name: Literal['file_aug'] = 'file_aug'\n"
        "@eclsr.hookimpl\n"
        "def eclsr_register_augmentations(register):\n"
        "    register(Mine)\n"
    )
    pm = new_plugin_manager(autoload=False)
    load_plugin_file(file, pm)
    assert "file_aug" in build_registries(pm).mild


def test_plugin_file_missing(tmp_path):
    with pytest.raises(PluginError, match="does not exist"):
        load_plugin_file(tmp_path / "nope.py", new_plugin_manager(autoload=False))
