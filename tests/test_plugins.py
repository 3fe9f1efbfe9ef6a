"""Plugin discovery, isolation of broken plugins, strict mode, disabling, the registry."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from seqkit import PluginError, RegistryError, hookimpl
from seqkit.plugins import make_plugin_manager

RAISING = """
from seqkit import hookimpl

@hookimpl
def register_encoders(register):
    raise RuntimeError("boom in hook")
"""

MISSPELLED = """
from seqkit import hookimpl

@hookimpl
def register_encoder(register):
    register("never", lambda config, d_model: None)
"""

IMPORT_ERROR = """
import seqkit_module_that_does_not_exist
"""

DUPLICATE_BACKEND = """
from seqkit import hookimpl

@hookimpl
def register_backends(register):
    register("cpu", object)
"""


def test_builtin_backends_are_discovered_through_entry_points():
    manager = make_plugin_manager()
    info = manager.plugins["seqkit_backends"]
    assert info.status == "ok"
    assert info.distribution == "seqkit"
    assert info.registered["backend"] == ["cpu", "cuda", "mps"]
    reg = manager.get("backend", "cpu")
    assert (reg.plugin, reg.distribution) == ("seqkit_backends", "seqkit")


def test_third_party_plugin_is_discovered_with_distribution_and_version(toy_encoder_plugin):
    manager = make_plugin_manager()
    info = manager.plugins[toy_encoder_plugin]
    assert (info.distribution, info.version, info.status) == ("seqkit-toy", "0.4.0", "ok")
    assert info.hooks == ["register_encoders"]
    reg = manager.get("encoder", "toy")
    assert (reg.distribution, reg.version, reg.plugin) == ("seqkit-toy", "0.4.0", toy_encoder_plugin)
    assert reg.config_class.__name__ == "ToyConfig"
    assert reg.factory(reg.config_class(), 8) == ("toy", reg.config_class(), 8)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (IMPORT_ERROR, "cannot import"),
        (RAISING, "hook register_encoders raised RuntimeError: boom in hook"),
        (MISSPELLED, "register_encoder"),
        (DUPLICATE_BACKEND, "duplicate backend 'cpu'"),
    ],
    ids=["import-error", "raising-hook", "misspelled-hook", "duplicate"],
)
def test_broken_plugin_is_skipped_and_named_while_others_work(
    install_plugin, toy_encoder_plugin, source, expected
):
    bad = install_plugin(source, dist="bad-plugin", version="9.9")
    manager = make_plugin_manager(strict=False)
    info = manager.plugins[bad]
    assert info.status == "broken"
    assert expected in info.error
    assert "\n" not in info.error
    assert info.registered["encoder"] == [] and info.registered["backend"] == []
    # everything else still works
    assert manager.get("encoder", "toy").plugin == toy_encoder_plugin
    assert {"cpu", "cuda", "mps"} <= set(manager.names("backend"))
    assert manager.get("backend", "cpu").plugin == "seqkit_backends"
    with pytest.raises(RegistryError, match="never|unknown"):
        manager.get("encoder", "never")


def test_duplicate_error_names_both_distributions(install_plugin):
    bad = install_plugin(DUPLICATE_BACKEND, dist="bad-plugin", version="9.9")
    error = make_plugin_manager().plugins[bad].error
    assert "seqkit_backends (seqkit 0.1.0)" in error
    assert f"{bad} (bad-plugin 9.9)" in error


@pytest.mark.parametrize("source", [IMPORT_ERROR, RAISING, MISSPELLED, DUPLICATE_BACKEND])
def test_strict_mode_makes_any_broken_plugin_fatal(install_plugin, monkeypatch, source):
    bad = install_plugin(source)
    with pytest.raises(PluginError, match=f"plugin {bad}"):
        make_plugin_manager(strict=True)
    monkeypatch.setenv("SEQKIT_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError):
        make_plugin_manager()


def test_a_raising_plugin_loses_all_its_registrations(install_plugin):
    bad = install_plugin("""
        from seqkit import hookimpl

        @hookimpl
        def register_backends(register):
            register("fine", object)

        @hookimpl
        def register_encoders(register):
            raise ValueError("late failure")
    """)
    manager = make_plugin_manager()
    assert manager.plugins[bad].status == "broken"
    assert "fine" not in manager.names("backend")


def test_disable_by_name_via_argument_and_environment(toy_encoder_plugin, monkeypatch):
    manager = make_plugin_manager(disable=[toy_encoder_plugin])
    assert manager.plugins[toy_encoder_plugin].status == "disabled"
    assert "toy" not in manager.names("encoder") and "lstm" in manager.names("encoder")
    monkeypatch.setenv("SEQKIT_DISABLE_PLUGINS", f" {toy_encoder_plugin} , seqkit_backends")
    manager = make_plugin_manager()
    assert "toy" not in manager.names("encoder")
    assert [r for r in manager.registrations("backend") if r.plugin == "seqkit_backends"] == []
    assert manager.plugins["seqkit_backends"].status == "disabled"


def test_each_call_makes_a_fresh_manager(toy_encoder_plugin):
    first, second = make_plugin_manager(), make_plugin_manager()
    assert first is not second and first.hooks is not second.hooks
    assert first.get("encoder", "toy") == second.get("encoder", "toy")


def test_plugins_can_be_passed_directly_and_accept_fewer_arguments():
    class Plugin:
        @hookimpl
        def register_commands(self):  # opts out of the `cli` argument
            self.called = True

    plugin = Plugin()
    manager = make_plugin_manager(entry_points=False, plugins=[("direct", plugin)])
    assert manager.plugins["direct"].status == "ok" and plugin.called


def test_registration_is_validated():
    class Plugin:
        @hookimpl
        def register_tasks(self, register):
            register("has space", lambda config: None)

    manager = make_plugin_manager(entry_points=False, plugins=[("p", Plugin())])
    assert "non-empty identifier" in manager.plugins["p"].error


def test_same_name_twice_in_one_plugin_is_an_error():
    class Plugin:
        @hookimpl
        def register_backends(self, register):
            register("x", object)
            register("x", object)

    manager = make_plugin_manager(entry_points=False, plugins=[("p", Plugin())])
    assert "twice" in manager.plugins["p"].error


def test_unknown_name_lists_available_names():
    manager = make_plugin_manager()
    with pytest.raises(RegistryError, match="unknown backend 'tpu'; available: cpu, cuda, mps"):
        manager.get("backend", "tpu")


def test_commands_are_registered_per_plugin(install_plugin):
    name = install_plugin("""
        import click
        from seqkit import hookimpl

        @hookimpl
        def register_commands(cli):
            @cli.command()
            def hello():
                click.echo("hi")
    """)
    info = make_plugin_manager().plugins[name]
    assert info.registered["command"] == ["hello"]
    assert json.loads(json.dumps(info.to_json()))["commands"] == ["hello"]


def test_importing_seqkit_loads_no_plugin_and_no_torch():
    code = ("import sys, seqkit, seqkit.hookspecs; "
            "print(any(m.startswith(('seqkit_', 'torch')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_hook_has_a_docstring_and_is_documented_in_the_readme():
    from pathlib import Path

    from seqkit import hookspecs
    from seqkit.plugins import HOOK_KINDS

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    names = [n for n in dir(hookspecs) if n.startswith("register_")]
    assert sorted(names) == sorted(HOOK_KINDS)
    for name in names:
        assert getattr(hookspecs, name).__doc__.strip()
        assert f"`{name}(" in readme, f"{name} is not documented in README.md"


def test_loading_every_installed_plugin_imports_no_torch():
    """`seqkit --help` and `seqkit plugins` load every plugin: built-in tasks and the example plugin
    name their factories as "module:attribute" and keep their option classes free of torch."""
    code = ("import sys; from seqkit.plugins import make_plugin_manager; m = make_plugin_manager(); "
            "assert not m.broken(), m.broken(); print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr
