"""The ``seqkit`` group: built-in verbs plus the commands plugins register. seqkit's own errors
print as one line on stderr with exit status 2; ``--debug`` shows tracebacks."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import click

import seqkit
from seqkit.errors import SeqkitError
from seqkit.progress import CLEAR_LINE, is_terminal

log = logging.getLogger("seqkit")


class CliError(click.ClickException):
    """A SeqkitError on its way to the terminal: one line, exit status 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"seqkit: error: {self.format_message()}", err=True)


class SeqkitGroup(click.Group):
    """Built-in verbs plus the commands plugins register; turns SeqkitError into CliError."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._plugin_commands(ctx)})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return super().get_command(ctx, name) or self._plugin_commands(ctx).get(name)

    def _plugin_commands(self, ctx: click.Context) -> dict[str, click.Command]:
        commands = {}
        registrations = plugin_manager(ctx).registrations("command")
        names = [reg.name for reg in registrations]
        for reg in registrations:
            if reg.name in self.commands:
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
# eager like --help, so that `seqkit --disable-plugin NAME --help` leaves NAME's commands out
@click.option("--debug", is_flag=True, is_eager=True, help="Show full tracebacks for errors.")
@click.option("--disable-plugin", multiple=True, metavar="NAME", is_eager=True,
              help="Do not load the plugin NAME (repeatable; adds to SEQKIT_DISABLE_PLUGINS).")
@click.pass_context
def cli(ctx: click.Context, debug: bool, disable_plugin: tuple[str, ...]) -> None:
    """seqkit: train, evaluate and serve sequence models built from plugins.

    Recurrent networks (RNN, LSTM, GRU) compute over a sequence step by step; the Transformer
    computes all positions at once. seqkit composes any encoder with any decoder.
    """
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        handlers=[log_handler(sys.stderr)])
    ctx.ensure_object(dict)


def log_handler(stream: TextIO) -> logging.Handler:
    """The command line's log lines, ``seqkit: warning: ...``, on ``stream``."""
    handler = _LineHandler(stream)
    handler.setFormatter(_LowerCaseLevel("seqkit: %(levelname)s: %(message)s"))
    return handler


class _LineHandler(logging.StreamHandler):
    """On a terminal each log line first erases the line being drawn there (a progress bar has
    no newline yet); the bar is drawn again below it at its next update."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return CLEAR_LINE + text if is_terminal(self.stream) else text


class _LowerCaseLevel(logging.Formatter):
    """`seqkit: warning: ...`, as the command line's own warnings and errors read."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(logging.makeLogRecord({**record.__dict__,
                                                     "levelname": record.levelname.lower()}))


def main() -> None:
    cli(prog_name="seqkit")
