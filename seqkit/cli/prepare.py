"""`seqkit prepare`: a config's train split encoded once into memory-mapped files, before any run."""

from __future__ import annotations

import click

from seqkit.cli.group import plugin_manager
from seqkit.cli.options import set_option


@click.command()
@click.argument("config", type=click.Path(dir_okay=False))
@set_option
@click.pass_context
def prepare(ctx: click.Context, config: str, overrides: tuple[str, ...]) -> None:
    """Fit the task on CONFIG's train split (its tokenizers) and encode the split once into
    memory-mapped files in the cache of prepared data ($SEQKIT_CACHE, else ~/.cache/seqkit).
    `seqkit run` does the same when they are missing; every run of a config over the same data
    and code then starts from them. Prints the folder and what it holds."""
    from seqkit.api import prepare as prepare_data
    from seqkit.progress import ConsoleProgress

    progress = ConsoleProgress(hold_startup=False)
    try:
        split = prepare_data(config, overrides=overrides, events=progress, manager=plugin_manager(ctx))
    finally:
        progress.close()
    stats = split.stats
    tokens = stats.get("source_tokens", 0) + stats.get("target_tokens", 0)
    size = sum(path.stat().st_size for path in split.folder.iterdir())
    click.echo(str(split.folder))
    click.echo(f"train: {len(split):,} of {stats['examples']:,} examples kept "
               f"({stats['dropped']:,} dropped, {stats['truncated']:,} truncated, {stats['empty']:,} empty), "
               f"{tokens:,} tokens, {size / 2**20:.1f} MiB")
