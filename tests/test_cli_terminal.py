"""What a person at a terminal sees from the command line: help texts that agree with their
defaults, and a word on standard input before seqkit waits on it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import seqkit
from seqkit.cli import cli
from seqkit.cli import generate as generate_module


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A two-step translation run: enough for generate to load and answer."""
    root = tmp_path_factory.mktemp("terminal")
    (root / "train.tsv").write_text("a b\tb a\nc\tc\n" * 8)
    config = {
        "seed": 0,
        "task": {"name": "translation", "train": str(root / "train.tsv"), "tokenizer": "word",
                 "vocab_size": 12},
        "model": {"d_model": 8, "encoder": {"name": "gru", "layers": 1},
                  "decoder": {"name": "gru", "layers": 1}},
        "data": {"batch_tokens": 64, "max_target_len": 4},
        "train": {"steps": 2, "eval_every": 2, "log_every": 1},
    }
    seqkit.train(config, out=root / "run", test=False)
    return root / "run"


@pytest.fixture
def terminal(monkeypatch):
    """Standard input is a person's terminal."""
    monkeypatch.setattr(generate_module, "_is_terminal", lambda stream: True)


def all_commands():
    paths, stack = [], [((), cli)]
    while stack:
        path, command = stack.pop()
        paths.append(path)
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            stack.append(((*path, name), sub))
    return paths


@pytest.mark.parametrize("path", all_commands(), ids=lambda p: " ".join(p) or "seqkit")
def test_no_help_text_names_a_default_it_does_not_have(path):
    """`[default: fp32]` beside "auto: the backend's default" read as two defaults (review)."""
    result = CliRunner().invoke(cli, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for line in result.output.splitlines():
        shown = re.search(r"\[default: ([^\]]+)\]", line)
        if shown is None:
            continue
        text = line[:shown.start()]
        assert not re.search(r"\((auto|\w+): [^)]*default\)", text), line
        assert not re.match(r"\s*--\S+.*\s(auto): the backend's default\.", text), line


def test_generate_on_a_terminal_says_it_reads_standard_input(run_folder, terminal):
    result = CliRunner().invoke(cli, ["generate", str(run_folder)], input="a b\n")
    assert result.exit_code == 0, result.output
    assert "reading inputs from standard input, one per line, until Ctrl-D" in result.stderr
    assert len(result.stdout.splitlines()) == 1  # the hint went to stderr, the output to stdout


def test_generate_from_a_pipe_prints_no_hint(run_folder):
    result = CliRunner().invoke(cli, ["generate", str(run_folder)], input="a b\nc\n")
    assert result.exit_code == 0, result.output
    assert result.stderr == "" and len(result.stdout.splitlines()) == 2


def test_interactive_says_how_to_leave(run_folder, terminal):
    result = CliRunner().invoke(cli, ["generate", str(run_folder), "--interactive"], input="a b\n")
    assert result.exit_code == 0, result.output
    assert "Ctrl-D (end of input) or Ctrl-C leaves" in result.stderr
    assert "Ctrl-D" in CliRunner().invoke(cli, ["generate", "--help"]).output


@pytest.mark.parametrize("debug", [[], ["--debug"]])
def test_help_lists_plugin_commands_and_honours_disable_plugin(install_plugin, debug):
    name = install_plugin("""
        import click
        from seqkit import hookimpl

        @hookimpl
        def register_commands(cli):
            @cli.command()
            def hello():
                "Say hello."
                click.echo("hi")
    """)
    assert "Say hello." in CliRunner().invoke(cli, [*debug, "--help"]).output
    hidden = CliRunner().invoke(cli, [*debug, "--disable-plugin", name, "--help"])
    assert hidden.exit_code == 0 and "hello" not in hidden.output



def test_config_show_lists_unset_options_and_warnings_read_lower_case():
    """In its own process: the command line's log format is what a person sees on stderr."""
    result = subprocess.run([sys.executable, "-m", "seqkit", "config", "show", "examples/translate.toml",
                             "--set", "model.encoder.name=lstm"], capture_output=True, text=True,
                            cwd=Path(__file__).parent.parent)
    assert result.returncode == 0, result.stderr
    assert "# hidden_size: not set (integer; None: d_model)" in result.stdout
    assert result.stderr.startswith("seqkit: warning: model.encoder.name=lstm: dropped model.encoder.heads")


def test_backends_table_lines_up_whatever_the_names(install_plugin):
    install_plugin("""
        from seqkit import hookimpl
        from seqkit_backends.cpu import CpuBackend

        class LongNamed(CpuBackend):
            name = "a_long_backend_name"
            priority = -1

        @hookimpl
        def register_backends(register):
            register("a_long_backend_name", LongNamed)
    """)
    result = CliRunner().invoke(cli, ["backends"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    columns = {line.index(" available") if " not available" not in line else line.index(" not available")
               for line in lines}
    assert len(lines) >= 3 and len(columns) == 1, result.output
