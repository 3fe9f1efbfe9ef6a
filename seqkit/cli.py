"""The ``seqkit`` command line: one command per verb, plugins may add more.

seqkit's own errors print as one line on stderr with exit status 2; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
from typing import Any

import click

import seqkit
from seqkit.cli_run import COMMANDS
from seqkit.errors import SeqkitError

log = logging.getLogger("seqkit")


class CliError(click.ClickException):
    """A SeqkitError on its way to the terminal: one line, exit status 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"seqkit: error: {self.format_message()}", err=True)


# built-in verbs whose modules are heavy to import: loaded when used (name -> "module:attribute")
LAZY_COMMANDS = {"bench": "seqkit.bench_cli:bench", "generate": "seqkit.cli_generate:generate",
                 "score": "seqkit.cli_generate:score"}


class SeqkitGroup(click.Group):
    """Built-in verbs plus the commands plugins register; turns SeqkitError into CliError."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS, *self._plugin_commands(ctx)})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in LAZY_COMMANDS and name not in self.commands:
            module, _, attribute = LAZY_COMMANDS[name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attribute), name)
        return super().get_command(ctx, name) or self._plugin_commands(ctx).get(name)

    def _plugin_commands(self, ctx: click.Context) -> dict[str, click.Command]:
        commands = {}
        registrations = plugin_manager(ctx).registrations("command")
        names = [reg.name for reg in registrations]
        for reg in registrations:
            if reg.name in self.commands or reg.name in LAZY_COMMANDS:
                log.warning("plugin %s: command %r clashes with a built-in command; ignored",
                            reg.plugin, reg.name)
                continue
            # two plugins adding one verb: neither takes the bare name, each is `seqkit plugin:verb`
            commands[reg.name if names.count(reg.name) == 1 else reg.qualified_name] = reg.factory
        return commands

    def invoke(self, ctx: click.Context) -> Any:
        """seqkit's own errors, and any other exception, as one line with exit status 2 (the
        plugin named when its code raised it); --debug lets them through with their traceback.
        A usage error (a bad option value, a missing argument) is one line too, naming the
        command's --help. Click's exit and abort, and KeyboardInterrupt, pass unchanged."""
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _usage_line(exc) from exc
        except (click.exceptions.Exit, click.Abort, click.ClickException):
            raise
        except Exception as exc:  # seqkit's own errors, a plugin's, out of memory, a bug
            if ctx.params.get("debug"):
                raise
            from seqkit.blame import error_line

            raise CliError(error_line(exc, (ctx.find_root().obj or {}).get("plugins"))) from exc

    def make_context(self, info_name, args, parent=None, **extra) -> click.Context:
        try:  # the group's own options and the command name: `seqkit --bogus`, `seqkit nosuch`
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise _usage_line(exc) from exc


def _usage_line(exc: click.UsageError) -> CliError:
    """Click's usage text (usage line, hint, error) as one line that names the --help to read."""
    where = exc.ctx.command_path if exc.ctx is not None else "seqkit"
    return CliError(f"{exc.format_message()} (see '{where} --help')")


def plugin_manager(ctx: click.Context):
    """The plugin manager of this invocation, made once, honouring --disable-plugin."""
    root = ctx.find_root()
    root.ensure_object(dict)
    if "plugins" not in root.obj:
        from seqkit.plugins import make_plugin_manager

        disabled = root.params.get("disable_plugin") or ()
        try:
            root.obj["plugins"] = make_plugin_manager(disable=disabled)
        except SeqkitError as exc:  # strict mode: a broken plugin is fatal
            if root.params.get("debug"):
                raise
            raise CliError(str(exc)) from exc
    return root.obj["plugins"]


@click.group(cls=SeqkitGroup, name="seqkit", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(seqkit.__version__, prog_name="seqkit")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.option("--disable-plugin", multiple=True, metavar="NAME",
              help="Do not load the plugin NAME (repeatable; adds to SEQKIT_DISABLE_PLUGINS).")
@click.pass_context
def cli(ctx: click.Context, debug: bool, disable_plugin: tuple[str, ...]) -> None:
    """seqkit: train, evaluate and serve sequence models built from plugins.

    Recurrent networks (RNN, LSTM, GRU) compute over a sequence step by step; the Transformer
    computes all positions at once. seqkit composes any encoder with any decoder.
    """
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="seqkit: %(levelname)s: %(message)s")
    ctx.ensure_object(dict)


# -- seqkit plugins -------------------------------------------------------------------------------


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array instead of a table.")
@click.pass_context
def plugins(ctx: click.Context, as_json: bool) -> None:
    """List installed plugins: distribution, version, status, hooks, what each registers."""
    if ctx.invoked_subcommand is not None:
        return
    manager = plugin_manager(ctx)
    infos = [info.to_json() for info in manager.plugins.values()]
    if as_json:
        click.echo(json.dumps(infos, indent=2))
        return
    for info in infos:
        dist = f"{info['distribution'] or '-'} {info['version'] or ''}".strip()
        status = info["status"] if not info["error"] else f"{info['status']}: {info['error']}"
        click.echo(f"{info['name']}  [{dist}]  {status}")
        for kind in ("encoders", "decoders", "tasks", "backends", "commands"):
            if info[kind]:
                click.echo(f"  {kind}: {', '.join(info[kind])}")
        for clash in info["clashes"]:
            click.echo(f"  clash: {clash}")


@plugins.command("check")
@click.argument("name", required=False)
@click.option("-v", "--verbose", is_flag=True, help="Also list the checks that passed.")
@click.pass_context
def plugins_check(ctx: click.Context, name: str | None, verbose: bool) -> None:
    """Run the conformance suite on the encoders and decoders of plugin NAME (all plugins when
    NAME is left out), each paired with every registered counterpart. Exit status 0 only when
    every check passes."""
    from seqkit.testing import conformance_checks, run_check

    manager = plugin_manager(ctx)
    if name is not None and name not in manager.plugins:
        raise SeqkitError(f"no plugin named {name!r}; installed: {', '.join(manager.plugins)}")
    if name is not None and manager.plugins[name].status != "ok":
        info = manager.plugins[name]
        raise SeqkitError(f"plugin {name} is {info.status}" + (f": {info.error}" if info.error else ""))
    checks = list(conformance_checks(manager, name))
    if not checks:
        raise SeqkitError(f"plugin {name or '(any)'} registers no encoder or decoder to check")
    counts = {"passed": 0, "failed": 0, "unsupported": 0}
    with click.progressbar(checks, label="conformance", file=sys.stderr,
                           item_show_func=lambda c: c and f"{c.subject}: {c.name}") as bar:
        outcomes = [run_check(check) for check in bar]
    for outcome in outcomes:
        counts[outcome.status] += 1
        if outcome.status != "passed" or verbose:
            detail = f": {outcome.detail}" if outcome.detail else ""
            click.echo(f"{outcome.status.upper():11} {outcome.check.subject}: {outcome.check.name}{detail}")
    click.echo(f"{counts['passed']} passed, {counts['failed']} failed, "
               f"{counts['unsupported']} unsupported")
    if counts["failed"]:
        ctx.exit(1)


# -- seqkit backends ------------------------------------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array instead of a table.")
@click.pass_context
def backends(ctx: click.Context, as_json: bool) -> None:
    """List device backends and whether each is available here; `auto` picks the first marked *."""
    from seqkit.backends import backends as all_backends

    rows = []
    for backend in all_backends(plugin_manager(ctx)):
        available = backend.is_available()
        precision = backend.default_precision() if available else None
        rows.append({
            "name": backend.name,
            "available": available,
            "device": backend.device_name() if available else None,
            "default_precision": precision,
            "distributed_backend": backend.distributed_backend,
            "peak_flops": backend.peak_flops(precision) if available else None,
        })
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    first_available = next((row["name"] for row in rows if row["available"]), None)
    for row in rows:
        mark = "*" if row["name"] == first_available else " "
        state = "available" if row["available"] else "not available"
        detail = f"  {row['device']}, {row['default_precision']}" if row["available"] else ""
        click.echo(f"{mark} {row['name']:<6} {state}{detail}")


# -- seqkit config --------------------------------------------------------------------------------

set_option = click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
                          help="Override a config value; VALUE is TOML (bare words are strings).")


@cli.group()
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
    click.echo(config_to_toml(resolved).rstrip("\n"))


for _command in COMMANDS:
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="seqkit")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
