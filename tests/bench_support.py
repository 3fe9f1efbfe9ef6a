"""`seqkit bench` under seqkit's error handling, as the real CLI wires it, for the bench tests."""

from __future__ import annotations

import click
from click.testing import CliRunner

from seqkit.cli import SeqkitGroup
from seqkit.cli.bench import bench


@click.group(cls=SeqkitGroup)
@click.option("--debug", is_flag=True)
def seqkit_cli(debug):
    """The bench under seqkit's error handling, as the real CLI wires it."""


seqkit_cli.add_command(bench)


def invoke(*args):
    return CliRunner().invoke(seqkit_cli, ["bench", *args], catch_exceptions=False)


def assert_refused(result, message: str) -> None:
    """``result`` is one ``seqkit: error:`` line holding ``message``, exit status 2, given before
    anything was timed."""
    assert result.exit_code == 2
    assert result.stderr.startswith("seqkit: error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "bench [" not in result.stderr  # refused before timing anything
