"""The ``seqkit`` command line: one command per verb, plugins may add more.

  group.py     the `seqkit` group: plugin commands, one-line errors (exit status 2), --debug
  options.py   options several commands share
  run.py       run, train (--nproc)        evaluate.py  eval
  generate.py  generate, score             tools.py     average, plot
  plugins.py   plugins, plugins check, backends
  config.py    config check, config show   bench.py     bench
  export.py    export, import hf           cache.py     cache list, cache clean

Every module here imports only click and seqkit's light modules at import time; torch is imported
inside the commands that need it, so `seqkit --help` answers at once.
"""

from __future__ import annotations

from seqkit.cli import bench, cache, config, evaluate, export, generate, plugins, prepare, run, tools
from seqkit.cli.group import CliError, SeqkitGroup, cli, main, plugin_manager

for _command in (run.run, run.train_command, evaluate.eval_command, generate.generate, generate.score,
                 prepare.prepare, tools.average, tools.plot, plugins.plugins, plugins.backends, config.config,
                 bench.bench, export.export_command, export.import_group, cache.cache_group):
    cli.add_command(_command)

__all__ = ["CliError", "SeqkitGroup", "cli", "main", "plugin_manager"]
