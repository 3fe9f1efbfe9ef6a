"""A broken hook is named: which hook raised, which hook name is misspelled (with a suggestion),
which hook takes arguments seqkit does not offer; one line each, strict mode makes them fatal."""

from __future__ import annotations

import pytest

from seqkit import PluginError
from seqkit.plugins import make_plugin_manager

RAISING_TASKS = """
from seqkit import hookimpl

@hookimpl
def register_encoders(register):
    pass

@hookimpl
def register_tasks(register):
    raise ValueError("no data folder")
"""

MISSPELLED = """
from seqkit import hookimpl

@hookimpl
def register_decoder(register):
    register("never", lambda config, d_model: None)
"""

WRONG_ARGUMENT = """
from seqkit import hookimpl

@hookimpl
def register_encoders(reg):
    reg("never", lambda config, d_model: None)
"""


def broken_error(install_plugin, source: str) -> tuple[str, str]:
    name = install_plugin(source, dist="seqkit-bad", version="0.1")
    info = make_plugin_manager(strict=False).plugins[name]
    assert info.status == "broken"
    assert "\n" not in info.error
    return name, info.error


def test_a_raising_hook_is_named(install_plugin):
    _, error = broken_error(install_plugin, RAISING_TASKS)
    assert error == "hook register_tasks raised ValueError: no data folder"


def test_a_misspelled_hook_is_one_line_with_a_suggestion(install_plugin):
    _, error = broken_error(install_plugin, MISSPELLED)
    assert error == "unknown hook register_decoder; did you mean register_decoders?"


def test_a_hook_taking_an_argument_seqkit_does_not_offer_is_named(install_plugin):
    _, error = broken_error(install_plugin, WRONG_ARGUMENT)
    assert error == ("hook register_encoders takes argument 'reg', which seqkit does not offer; "
                     "it offers: register")


@pytest.mark.parametrize("source, expected", [
    (RAISING_TASKS, "hook register_tasks raised ValueError: no data folder"),
    (MISSPELLED, "unknown hook register_decoder; did you mean register_decoders?"),
])
def test_strict_mode_names_plugin_and_hook(install_plugin, source, expected):
    name = install_plugin(source)
    with pytest.raises(PluginError) as info:
        make_plugin_manager(strict=True)
    assert str(info.value) == f"plugin {name}: {expected}"


def test_the_log_line_names_plugin_and_hook(install_plugin, caplog):
    name = install_plugin(RAISING_TASKS)
    make_plugin_manager(strict=False)
    assert f"plugin {name} skipped: hook register_tasks raised ValueError: no data folder" in caplog.text


@pytest.mark.parametrize("signature", ["register, extra=None", "register, **kwargs",
                                       "register, *args", "register, *, note='x'"])
def test_a_hook_with_optional_or_catch_all_arguments_loads(install_plugin, signature):
    """Only a required argument seqkit does not offer is an error: pluggy passes the offered ones
    and leaves defaulted, *args and **kwargs parameters alone."""
    name = install_plugin(f"""
from seqkit import hookimpl

@hookimpl
def register_encoders({signature}):
    register("optional_args", lambda config, d_model: None)
""")
    manager = make_plugin_manager(strict=True)
    assert manager.plugins[name].status == "ok"
    assert "optional_args" in manager.names("encoder")
