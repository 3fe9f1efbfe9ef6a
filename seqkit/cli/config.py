"""`seqkit config check` and `seqkit config show`: validate and print run configuration files."""

from __future__ import annotations

import logging

import click

from seqkit.cli.group import plugin_manager
from seqkit.cli.options import set_option

log = logging.getLogger("seqkit")




@click.group()
def config() -> None:
    """Validate and show run configuration files."""


@config.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
@set_option
@click.pass_context
def config_check(ctx: click.Context, file: str, overrides: tuple[str, ...]) -> None:
    """Check that FILE will run: every check `seqkit run` makes before its first step, without
    training. Unknown keys, wrong types, numbers that are not finite, unknown plugin names,
    options a plugin rejects, a missing [task], data files that do not read, an unknown or
    unavailable backend, components that do not make a model of the task's kind or do not take
    the length limits, a best_metric the task does not report, and a model or data too large for
    this machine's memory are errors (one line, exit status 2).

    Prints FILE: ok (the parameter count and memory estimate are logged at --debug)."""
    from seqkit.config import load_config
    from seqkit.preflight import check_run_config

    manager = plugin_manager(ctx)
    estimate = check_run_config(load_config(file, overrides, manager=manager), manager)
    log.debug("%s: %s parameters; about %.0f MB for parameters, optimizer state and data", file,
              f"{estimate.parameters:,}", estimate.memory_bytes / 1e6)
    click.echo(f"{file}: ok")


@config.command("show")
@click.argument("file", type=click.Path(dir_okay=False))
@set_option
@click.pass_context
def config_show(ctx: click.Context, file: str, overrides: tuple[str, ...]) -> None:
    """Print the resolved configuration of FILE, every default filled in, as TOML."""
    from seqkit.config import config_to_toml, load_config

    resolved = load_config(file, overrides, manager=plugin_manager(ctx))
    click.echo(config_to_toml(resolved, unset=True).rstrip("\n"))
