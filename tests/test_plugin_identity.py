"""Plugin identity: name clashes between third-party plugins, qualified names (``plugin:name``),
and checkpoints that remember which plugin built each component."""

from __future__ import annotations

import logging

import pytest

import seqkit
from seqkit import PluginError, RegistryError
from seqkit.checkpoint import FORMAT_VERSION, check_meta
from seqkit.config import config_to_toml, load_config
from seqkit.errors import CheckpointError, ConfigError
from seqkit.plugins import make_plugin_manager

# an encoder 'cnn' that works in a real model: a position-wise linear map (padding invariant)
CNN = """
from dataclasses import dataclass

import torch
from seqkit import hookimpl
from seqkit.interfaces import Encoder, EncoderOutput

@dataclass
class CnnConfig:
    dropout: float = 0.0
    scale: float = {scale}

class Cnn(Encoder):
    def __init__(self, config, d_model):
        super().__init__()
        self.d_model = d_model
        self.proj = torch.nn.Linear(d_model, d_model)

    def forward(self, x, mask):
        return EncoderOutput(self.proj(x), mask, None)

@hookimpl
def register_encoders(register):
    register("cnn", Cnn, CnnConfig)
"""


def cnn(scale: float = 1.0) -> str:
    return CNN.replace("{scale}", repr(scale))


@pytest.fixture(params=[("seqkit_a", "seqkit_b"), ("zz_a", "aa_b")], ids=["a-sorts-first", "b-sorts-first"])
def two_cnns(request, install_plugin):
    """Plugins A (seqkit-a 1.0) and B (seqkit-b 2.0) both register encoder 'cnn'; A is installed
    first, and its entry-point name sorts first in one case and last in the other. -> (A, B)."""
    a, b = request.param
    install_plugin(cnn(), dist="seqkit-a", version="1.0", name=a)
    install_plugin(cnn(), dist="seqkit-b", version="2.0", name=b)
    return a, b


def test_third_party_clash_keeps_both_plugins_loaded(two_cnns):
    a, b = two_cnns
    manager = make_plugin_manager(strict=False)
    for name in (a, b):
        info = manager.plugins[name]
        assert info.status == "ok" and info.registered["encoder"] == ["cnn"]
    assert manager.get("encoder", f"{a}:cnn").distribution == "seqkit-a"
    assert manager.get("encoder", f"{b}:cnn").distribution == "seqkit-b"
    # everything else is untouched
    assert manager.get("encoder", "lstm").plugin == "seqkit_recurrent"


def test_a_clashing_name_is_ambiguous_naming_both_providers_and_the_way_out(two_cnns):
    a, b = two_cnns
    manager = make_plugin_manager()
    with pytest.raises(RegistryError) as caught:
        manager.get("encoder", "cnn")
    message = str(caught.value)
    assert "\n" not in message
    assert f"{a} (seqkit-a 1.0)" in message and f"{b} (seqkit-b 2.0)" in message
    assert f"{a}:cnn" in message and f"{b}:cnn" in message
    assert "--disable-plugin" in message


def test_the_clash_is_shown_on_both_plugins(two_cnns):
    a, b = two_cnns
    manager = make_plugin_manager()
    info_a, info_b = manager.plugins[a].to_json(), manager.plugins[b].to_json()
    assert any(b in clash and "cnn" in clash for clash in info_a["clashes"])
    assert any(a in clash and "cnn" in clash for clash in info_b["clashes"])


def test_clashes_are_listed_by_seqkit_plugins_json(two_cnns):
    a, b = two_cnns
    import json

    from click.testing import CliRunner

    from seqkit.cli import cli

    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    infos = {info["name"]: info for info in json.loads(result.output)}
    assert infos[a]["status"] == infos[b]["status"] == "ok"
    assert infos[a]["clashes"] and infos[b]["clashes"]


def test_names_list_a_clashing_name_and_its_qualified_forms(two_cnns):
    a, b = two_cnns
    names = make_plugin_manager().names("encoder")
    assert {"cnn", f"{a}:cnn", f"{b}:cnn", "lstm"} <= set(names)
    assert "seqkit_recurrent:lstm" not in names  # no clash, no need to qualify


def test_strict_mode_makes_a_clash_fatal(two_cnns, monkeypatch):
    a, b = two_cnns
    with pytest.raises(PluginError, match="cnn") as caught:
        make_plugin_manager(strict=True)
    assert a in str(caught.value) and b in str(caught.value)
    monkeypatch.setenv("SEQKIT_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError):
        make_plugin_manager()


def test_disabling_one_plugin_resolves_the_clash(two_cnns):
    a, b = two_cnns
    manager = make_plugin_manager(disable=[b])
    assert manager.get("encoder", "cnn").plugin == a
    assert manager.plugins[a].clashes == []
    with pytest.raises(RegistryError, match=f"{b}.*disabled"):
        manager.get("encoder", f"{b}:cnn")


@pytest.mark.parametrize("name", ["aaa_plugin", "zzz_plugin"])
def test_a_builtin_name_stays_builtin_whatever_the_plugin_is_called(install_plugin, name):
    install_plugin(cnn().replace('"cnn"', '"lstm"'), dist="seqkit-x", version="1.0", name=name)
    manager = make_plugin_manager()
    assert manager.get("encoder", "lstm").plugin == "seqkit_recurrent"
    assert manager.plugins[name].status == "broken"
    assert "duplicate encoder 'lstm'" in manager.plugins[name].error


def test_qualified_names_of_builtins_and_unknown_plugins():
    manager = make_plugin_manager()
    assert manager.get("encoder", "seqkit_recurrent:lstm") is manager.get("encoder", "lstm")
    with pytest.raises(RegistryError, match="no plugin named 'nope'"):
        manager.get("encoder", "nope:lstm")
    with pytest.raises(RegistryError, match="plugin seqkit_recurrent registers no encoder 'cnn'"):
        manager.get("encoder", "seqkit_recurrent:cnn")


def config_dict(encoder: str) -> dict:
    return {
        "seed": 1,
        "task": {"name": "reverse", "symbols": 5, "min_len": 2, "max_len": 4, "train_size": 16,
                 "valid_size": 4, "test_size": 4},
        "model": {"d_model": 8, "encoder": {"name": encoder},
                  "decoder": {"name": "gru", "layers": 1}},
        "data": {"batch_tokens": 64, "max_source_len": 6, "max_target_len": 6},
        "train": {"steps": 2, "lr": 1e-3, "warmup_steps": 1, "eval_every": 2, "log_every": 1},
    }


def test_config_picks_one_provider_with_a_qualified_name(two_cnns):
    a, b = two_cnns
    manager = make_plugin_manager()
    config = load_config(config_dict(f"{b}:cnn"), manager=manager)
    assert config.model.encoder.name == f"{b}:cnn"
    assert f'name = "{b}:cnn"' in config_to_toml(config)
    with pytest.raises(ConfigError) as caught:
        load_config(config_dict("cnn"), manager=manager)
    assert "model.encoder.name" in str(caught.value) and "ambiguous" in str(caught.value)
    assert "\n" not in str(caught.value)


# -- checkpoints ----------------------------------------------------------------------------------


def meta(plugin="seqkit_a", distribution="seqkit-a", version="1.0", name="cnn") -> dict:
    return {"format_version": FORMAT_VERSION, "components": {
        "encoder": {"kind": "encoder", "name": name, "plugin": plugin,
                    "distribution": distribution, "version": version}}}


def test_check_meta_refuses_the_same_name_from_another_plugin(install_plugin):
    install_plugin(cnn(), dist="seqkit-b", version="2.0", name="seqkit_b")
    with pytest.raises(CheckpointError) as caught:
        check_meta(meta(), "run/best.safetensors", make_plugin_manager())
    assert str(caught.value) == (
        "run/best.safetensors: needs encoder 'cnn' from plugin seqkit_a (seqkit-a 1.0); "
        "the installed 'cnn' comes from seqkit_b (seqkit-b 2.0)")


def test_check_meta_refuses_the_same_plugin_name_from_another_distribution(install_plugin):
    install_plugin(cnn(), dist="seqkit-fork", version="1.0", name="seqkit_a")
    with pytest.raises(CheckpointError, match=r"seqkit_a \(seqkit-a 1\.0\).*seqkit_a \(seqkit-fork 1\.0\)"):
        check_meta(meta(), "ckpt", make_plugin_manager())


def test_check_meta_allows_another_version_of_the_same_distribution_with_a_warning(install_plugin, caplog):
    install_plugin(cnn(), dist="seqkit-a", version="1.1", name="seqkit_a")
    with caplog.at_level(logging.WARNING, logger="seqkit"):
        check_meta(meta(), "ckpt", make_plugin_manager())
    assert any("seqkit-a 1.0" in r.getMessage() and "1.1" in r.getMessage() for r in caplog.records)


def test_check_meta_finds_the_recorded_plugin_among_clashing_ones(two_cnns):
    a, b = two_cnns
    manager = make_plugin_manager()
    check_meta(meta(a), "ckpt", manager)
    check_meta(meta(b, "seqkit-b", "2.0"), "ckpt", manager)


def test_check_meta_names_what_is_missing(install_plugin):
    with pytest.raises(CheckpointError, match="needs encoder 'cnn' from plugin seqkit_a .*not installed"):
        check_meta(meta(), "ckpt", make_plugin_manager())


@pytest.fixture
def trained_with_a(tmp_path, install_plugin):
    """A run trained with seqkit_a's 'cnn' (seqkit_b installed too, disabled while training)."""
    install_plugin(cnn(), dist="seqkit-a", version="1.0", name="seqkit_a")
    install_plugin(cnn(scale=2.0), dist="seqkit-b", version="2.0", name="seqkit_b")
    out = tmp_path / "run"
    seqkit.train(config_dict("cnn"), out=out, test=False,
                 manager=make_plugin_manager(disable=["seqkit_b"]))
    return out


def test_a_checkpoint_does_not_load_with_another_plugins_component(trained_with_a, one_thread):
    with pytest.raises(CheckpointError) as caught:
        seqkit.load(trained_with_a, manager=make_plugin_manager(disable=["seqkit_a"]))
    assert "needs encoder 'cnn' from plugin seqkit_a (seqkit-a 1.0); the installed 'cnn' comes " \
           "from seqkit_b (seqkit-b 2.0)" in str(caught.value)
    model = seqkit.load(trained_with_a, manager=make_plugin_manager(disable=["seqkit_b"]))
    assert model.generate(["a b"])


def test_a_qualified_name_is_stored_and_loads_while_its_plugin_is_installed(tmp_path, two_cnns, one_thread):
    a, b = two_cnns
    out = tmp_path / "run"
    seqkit.train(config_dict(f"{a}:cnn"), out=out, test=False, manager=make_plugin_manager())
    for disabled in ([], [b]):
        model = seqkit.load(out, manager=make_plugin_manager(disable=disabled))
        assert model.config.model.encoder.name == f"{a}:cnn"
        assert model.meta["components"]["encoder"]["plugin"] == a
    with pytest.raises(CheckpointError, match=f"from plugin {a}"):
        seqkit.load(out, manager=make_plugin_manager(disable=[a]))


def test_a_checkpoint_with_a_bare_name_loads_its_own_plugins_component_after_a_clash(trained_with_a):
    """seqkit_b was installed after training: the stored bare 'cnn' is ambiguous now, and the
    checkpoint's metadata says which plugin it meant."""
    import tomllib

    from seqkit.checkpoint import load_tensors, pin_components
    from seqkit.run_folder import RunFolder

    manager = make_plugin_manager()
    _, stored = load_tensors(RunFolder(trained_with_a).latest_checkpoint())
    check_meta(stored, "ckpt", manager)
    data = tomllib.loads(stored["config"])
    with pytest.raises(ConfigError, match="ambiguous"):
        load_config(data, manager=manager)
    config = load_config(pin_components(data, stored, manager), manager=manager)
    assert config.model.encoder.name == "seqkit_a:cnn"
    assert config.model.decoder.name == "gru"  # not ambiguous: left as it was


def test_the_conformance_suite_checks_both_clashing_components_by_qualified_name(two_cnns):
    from seqkit.testing import conformance_checks

    a, b = two_cnns
    subjects = {check.subject for check in conformance_checks(make_plugin_manager())}
    assert f"encoder {a}:cnn" in subjects and f"encoder {b}:cnn" in subjects
    assert "encoder lstm" in subjects


def test_clashes_are_listed_by_seqkit_plugins(two_cnns):
    from click.testing import CliRunner

    from seqkit.cli import cli

    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    assert result.output.count("  clash: ") >= 2 and "cnn" in result.output


VERB = """
import click
from seqkit import hookimpl

@hookimpl
def register_commands(cli):
    @cli.command()
    def hello():
        click.echo("{who}")
"""


def test_two_plugins_adding_one_command_each_get_a_qualified_verb(install_plugin):
    from click.testing import CliRunner

    from seqkit.cli import cli

    install_plugin(VERB.replace("{who}", "from a"), dist="seqkit-a", version="1.0", name="zz_a")
    install_plugin(VERB.replace("{who}", "from b"), dist="seqkit-b", version="2.0", name="aa_b")
    runner = CliRunner()
    assert runner.invoke(cli, ["zz_a:hello"]).output == "from a\n"
    assert runner.invoke(cli, ["aa_b:hello"]).output == "from b\n"
    bare = runner.invoke(cli, ["hello"])
    assert bare.exit_code == 2 and "No such command 'hello'" in bare.stderr  # neither wins silently
