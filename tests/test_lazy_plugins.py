"""A plugin may name its factories as "module:attribute": listing plugins and their commands
(``seqkit --help``, ``seqkit plugins``) then imports none of its heavy modules."""

from __future__ import annotations

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
    ("seqkit_no_such_module:Task", "cannot import its factory seqkit_no_such_module:Task"),
    ("sys:no_such_attribute", "cannot import its factory sys:no_such_attribute"),
    ("sys:version", "sys:version is not callable"),
])
def test_a_bad_reference_is_a_plugin_error_naming_plugin_and_reference(target, message):
    manager = make_plugin_manager(entry_points=False, plugins=[("lazy", LazyPlugin(target))])
    with pytest.raises(PluginError, match="plugin lazy: task 'lazy': ") as caught:
        _ = manager.get("task", "lazy").factory
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("target", ["no colon", "a:b:c", ":attr", "module:"])
def test_a_malformed_reference_marks_the_plugin_broken_when_it_loads(target):
    manager = make_plugin_manager(entry_points=False, plugins=[("lazy", LazyPlugin(target))])
    assert manager.plugins["lazy"].status == "broken"
    assert "'module:attribute'" in manager.plugins["lazy"].error



def test_help_and_plugin_listing_import_no_torch():
    """Every built-in plugin registers by reference; `seqkit --help` lists plugin commands
    without importing torch (the review measured 4-5 s for --help, all of it torch)."""
    code = ("import sys\nfrom click.testing import CliRunner\nfrom seqkit.cli import cli\n"
            "result = CliRunner().invoke(cli, ['--help'])\nassert result.exit_code == 0, result.output\n"
            "heavy = ('torch', 'sacrebleu', 'tokenizers')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy)[:5])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
