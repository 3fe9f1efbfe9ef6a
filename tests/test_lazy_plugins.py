"""A plugin may name its factories as "module:attribute": listing plugins and their commands
(``seqkit --help``, ``seqkit plugins``) then imports none of its heavy modules."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from seqkit import PluginError, hookimpl, make_plugin_manager


class LazyPlugin:
    """Registers a task by reference to a module that records its import."""

    def __init__(self, target: str):
        self.target = target

    @hookimpl
    def register_tasks(self, register):
        register("lazy", self.target)


@pytest.fixture
def heavy_module(tmp_path, monkeypatch):
    (tmp_path / "seqkit_heavy_fake.py").write_text(
        "import sys\nsys.modules[__name__].imported = True\n\n"
        "class HeavyTask:\n    def __init__(self, options=None):\n        self.options = options\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "seqkit_heavy_fake"
    sys.modules.pop("seqkit_heavy_fake", None)


def test_a_named_factory_is_imported_on_first_use_only(heavy_module):
    manager = make_plugin_manager(entry_points=False,
                                  plugins=[("lazy", LazyPlugin(f"{heavy_module}:HeavyTask"))])
    assert manager.plugins["lazy"].status == "ok"
    assert manager.names("task") == ["lazy"]
    assert heavy_module not in sys.modules  # registering and listing imported nothing
    factory = manager.get("task", "lazy").factory
    assert factory.__name__ == "HeavyTask" and heavy_module in sys.modules
    assert manager.get("task", "lazy").factory is factory  # resolved once


@pytest.mark.parametrize("target, message", [
    ("sys:no_such_attribute", "cannot import its factory sys:no_such_attribute"),
    ("sys:version", "sys:version is not callable"),
])
def test_a_bad_reference_is_a_plugin_error_naming_plugin_and_reference(target, message):
    manager = make_plugin_manager(entry_points=False, plugins=[("lazy", LazyPlugin(target))])
    with pytest.raises(PluginError, match="plugin lazy: task 'lazy': ") as caught:
        _ = manager.get("task", "lazy").factory
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("target", ["no colon", "a:b:c", ":attr", "module:", "sys:path.append"])
def test_a_malformed_reference_marks_the_plugin_broken_when_it_loads(target):
    manager = make_plugin_manager(entry_points=False, plugins=[("lazy", LazyPlugin(target))])
    assert manager.plugins["lazy"].status == "broken"
    assert "'module:attribute'" in manager.plugins["lazy"].error


@pytest.mark.parametrize("target", ["seqkit_no_such_module:Task", "sys.no_such_module:Task",
                                    "seqkit_no_such_package.sub:Task"])
def test_a_reference_to_a_module_that_does_not_exist_marks_the_plugin_broken_when_it_loads(target):
    """Found when the plugin loads (without importing the module), not when a run first builds it."""
    manager = make_plugin_manager(entry_points=False, plugins=[("lazy", LazyPlugin(target))])
    assert manager.plugins["lazy"].status == "broken"
    assert f"task 'lazy': its factory's module {target.partition(':')[0]} does not exist" in \
        manager.plugins["lazy"].error


@pytest.fixture
def broken_module(tmp_path, monkeypatch):
    """A module that exists but fails to import (a missing dependency of a plugin)."""
    (tmp_path / "seqkit_broken_fake.py").write_text("import seqkit_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "seqkit_broken_fake"
    sys.modules.pop("seqkit_broken_fake", None)


class LazyBackendPlugin:
    def __init__(self, target: str):
        self.target = target

    @hookimpl
    def register_backends(self, register):
        register("lazy_backend", self.target)


class NotABackend:
    pass


def _raising_backend():
    raise RuntimeError("no driver")


@pytest.mark.parametrize("target, message", [
    ("seqkit_broken_fake:Backend", "cannot import its factory seqkit_broken_fake:Backend"),
    (f"{__name__}:NotABackend", "is not a seqkit Backend"),
    (f"{__name__}:_raising_backend", "RuntimeError: no driver"),
])
def test_one_broken_backend_does_not_break_choosing_another(broken_module, target, message, caplog):
    """Choosing a backend builds every backend to compare priorities: one plugin's broken backend
    is skipped with a warning naming it, so the cpu backend (and every run on it) still works."""
    from seqkit.backends import backends, get_backend

    plugins = [("lazy", LazyBackendPlugin(target))]
    manager = make_plugin_manager(plugins=plugins)
    with caplog.at_level("WARNING"):
        assert get_backend("cpu", manager).name == "cpu"
        assert "lazy_backend" not in [b.name for b in backends(manager)]
    assert any("plugin lazy: backend 'lazy_backend'" in r.getMessage() and message in r.getMessage()
               for r in caplog.records)
    strict = make_plugin_manager(plugins=plugins, strict=True)
    with pytest.raises(PluginError, match=f"plugin lazy: backend 'lazy_backend'.*{re.escape(message)}"):
        get_backend("cpu", strict)


def test_looking_for_the_plugin_behind_an_error_imports_no_plugin_module(heavy_module):
    """Blame reads each registration's module from its reference: it imports none of them, and a
    reference that cannot be imported does not replace the error being explained."""
    from seqkit.blame import blame

    manager = make_plugin_manager(entry_points=False, plugins=[
        ("lazy", LazyPlugin(f"{heavy_module}:HeavyTask")),
        ("other", LazyBackendPlugin("sys:no_such_attribute"))])
    try:  # raised in this module, which is the plugin "lazy"'s own module
        raise ValueError("from the plugin")
    except ValueError as exc:
        found = blame(exc, manager)
    assert (found.plugin, found.kind) == ("lazy", "task")
    assert heavy_module not in sys.modules


def test_an_api_error_keeps_its_cause_when_the_plugin_lookup_fails_in_strict_mode(
        install_plugin, monkeypatch):
    """plugin_errors builds a manager to name the plugin behind an error; if that manager cannot
    be built (strict mode, a broken plugin), the original error still reaches the caller."""
    from seqkit.blame import plugin_errors

    install_plugin("raise RuntimeError('broken at import')\n", dist="seqkit-broken-fake")
    monkeypatch.setenv("SEQKIT_STRICT_PLUGINS", "1")

    @plugin_errors(lambda: None)
    def api_call():
        raise KeyError("the real error")

    with pytest.raises(KeyError, match="the real error"):
        api_call()


def test_help_and_plugin_listing_import_no_torch():
    """Every built-in plugin registers by reference; `seqkit --help` lists plugin commands
    without importing torch (the review measured 4-5 s for --help, all of it torch)."""
    code = ("import sys\nfrom click.testing import CliRunner\nfrom seqkit.cli import cli\n"
            "result = CliRunner().invoke(cli, ['--help'])\nassert result.exit_code == 0, result.output\n"
            "heavy = ('torch', 'sacrebleu', 'tokenizers')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy)[:5])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
