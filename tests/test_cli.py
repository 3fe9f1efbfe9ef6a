"""The command line through click's CliRunner: every verb, exit codes, one-line errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import seqkit
from seqkit.cli import cli


@pytest.fixture
def run():
    def invoke(*args: str, **kwargs):
        return CliRunner().invoke(cli, list(args), **kwargs)

    return invoke


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seqkit: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.output


def test_version(run):
    result = run("--version")
    assert result.exit_code == 0 and result.output.strip() == f"seqkit, version {seqkit.__version__}"


def test_help_lists_the_verbs(run):
    result = run("--help")
    assert result.exit_code == 0
    for verb in ("plugins", "backends", "config"):
        assert verb in result.output


def test_plugins_json_lists_builtin_backends(run):
    result = run("plugins", "--json")
    assert result.exit_code == 0, result.output
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    backends = plugins["seqkit_backends"]
    assert backends["backends"] == ["cpu", "cuda", "mps"]
    assert (backends["distribution"], backends["version"], backends["status"]) == (
        "seqkit", seqkit.__version__, "ok")
    assert backends["hooks"] == ["register_backends"]
    for key in ("encoders", "decoders", "tasks", "commands", "error"):
        assert key in backends


def test_plugins_table_shows_broken_plugins_with_their_error(run, install_plugin, toy_encoder_plugin):
    bad = install_plugin("import does_not_exist_anywhere\n", dist="bad-dist", version="0.0.1")
    result = run("plugins")
    assert result.exit_code == 0
    assert f"{toy_encoder_plugin}  [seqkit-toy 0.4.0]  ok" in result.stdout
    assert "  encoders: toy" in result.stdout
    assert f"{bad}  [bad-dist 0.0.1]  broken: cannot import" in result.stdout


def test_strict_mode_turns_a_broken_plugin_into_exit_2(run, install_plugin, monkeypatch):
    bad = install_plugin("import does_not_exist_anywhere\n")
    monkeypatch.setenv("SEQKIT_STRICT_PLUGINS", "1")
    assert_one_line_error(run("plugins"), f"plugin {bad}", "cannot import")


def test_disable_plugin_option(run, toy_encoder_plugin):
    result = run("--disable-plugin", toy_encoder_plugin, "plugins", "--json")
    status = {p["name"]: p["status"] for p in json.loads(result.stdout)}
    assert status[toy_encoder_plugin] == "disabled" and status["seqkit_backends"] == "ok"


def test_backends(run):
    result = run("backends")
    assert result.exit_code == 0
    assert any(line.split()[:3] in (["*", "cpu", "available"], ["cpu", "available"])
               for line in result.stdout.splitlines())
    rows = {row["name"]: row for row in json.loads(run("backends", "--json").stdout)}
    assert rows["cpu"]["available"] is True and rows["cpu"]["default_precision"] == "fp32"
    assert rows["cuda"]["distributed_backend"] == "nccl"


def test_config_check_and_show(run, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('seed = 7\n[task]\nname = "copy"\n[model.encoder]\nname = "gru"\n'
                    '[model.decoder]\nname = "gru"\n')
    result = run("config", "check", str(path))
    assert result.exit_code == 0 and result.stdout.strip() == f"{path}: ok"
    result = run("config", "show", str(path), "--set", "model.encoder.layers=9")
    assert result.exit_code == 0
    assert "seed = 7" in result.stdout and "layers = 9" in result.stdout
    assert "[model.encoder]" in result.stdout and "[train]" in result.stdout


def test_config_errors_are_one_line_exit_2(run, tmp_path, toy_encoder_plugin):
    path = tmp_path / "run.toml"
    path.write_text('[model.encoder]\nname = "toy"\nlayerz = 1\n')
    assert_one_line_error(run("config", "check", str(path)),
                          f"{path}:3: model.encoder.layerz: unknown key; did you mean 'layers'?")
    assert_one_line_error(run("config", "show", str(tmp_path / "none.toml")), "no such config file")
    assert_one_line_error(run("config", "check", str(path), "--set", "model.encoder.layerz"),
                          "expected KEY.PATH=VALUE")


def test_debug_shows_the_traceback(run, tmp_path):
    result = run("--debug", "config", "check", str(tmp_path / "none.toml"))
    assert result.exit_code != 0 and isinstance(result.exception, seqkit.ConfigError)


def test_usage_errors_exit_2(run):
    assert run("config", "check").exit_code == 2
    assert run("no-such-verb").exit_code == 2


def test_plugin_commands_join_the_cli(run, install_plugin):
    install_plugin("""
        import click
        from seqkit import hookimpl

        @hookimpl
        def register_commands(cli):
            @cli.command()
            @click.argument("who")
            def greet(who):
                '''Greet someone.'''
                click.echo(f"hello {who}")

            @cli.command("config")
            def clash():
                click.echo("should never run")
    """)
    assert run("greet", "world").stdout == "hello world\n"
    assert "greet" in run("--help").stdout
    result = run("config", "--help")
    assert "Validate and show" in result.stdout  # the built-in wins a clash


def test_config_check_runs_the_component_factories(run, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[task]\nname = "copy"\n[model]\nd_model = 64\n[model.encoder]\nname = "transformer"\n'
                    'heads = 5\n[model.decoder]\nname = "gru"\n')
    assert_one_line_error(run("config", "check", str(path)),
                          f"{path}:7: model.encoder.heads: 5 does not divide d_model 64")


def test_the_readme_config_example_is_valid(run, tmp_path):
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    example = readme.split("## Configuration", 1)[1].split("```toml", 1)[1].split("```", 1)[0]
    path = tmp_path / "readme.toml"
    path.write_text(example)
    result = run("config", "check", str(path))
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(("args", "expected"), [
    (["--bogus"], "No such option '--bogus'. (see 'seqkit --help')"),
    (["nosuch"], "No such command 'nosuch'. (see 'seqkit --help')"),
    (["generate", "--beam", "nan", "x", "y"], "Invalid value for '--beam': 'nan' is not a valid integer."),
    (["config", "check"], "Missing argument 'FILE'. (see 'seqkit config check --help')"),
])
def test_usage_errors_are_one_line_naming_the_help(args, expected):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert result.stderr.startswith("seqkit: error: ") and expected in result.stderr
