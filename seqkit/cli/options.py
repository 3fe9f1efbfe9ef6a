"""Options several commands share."""

from __future__ import annotations

import click

set_option = click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
                          help="Override a config value; VALUE is TOML (bare words are strings).")
