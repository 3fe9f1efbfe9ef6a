"""`seqkit cache list` and `seqkit cache clean`: the cache of prepared data, seen and pruned."""

from __future__ import annotations

import json
import time

import click


@click.group("cache")
def cache_group() -> None:
    """The cache of prepared data ($SEQKIT_CACHE, else $XDG_CACHE_HOME/seqkit, else ~/.cache/seqkit):
    one folder per task and data, made by `seqkit prepare` or the first run of a config. A changed
    data file, seqkit version or code makes a new folder and leaves the old one unused."""


@cache_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per folder, one per line.")
def list_command(as_json: bool) -> None:
    """Each folder of the cache, least recently used first: its size, when a run last used it,
    its task and the files it was made from."""
    from seqkit.cache_folders import cache_folders
    from seqkit.data_cache import cache_root

    folders = cache_folders()
    for entry in folders:
        if as_json:
            click.echo(json.dumps(entry.as_dict()))
            continue
        files = ", ".join(f"{key} {value}" for key, value in entry.files.items())
        click.echo(f"{entry.folder.name}  {_size(entry.bytes)}  used {_ago(entry.last_used)}  {entry.task}"
                   f"{': ' + files if files else ''}")
    if not as_json:
        total = sum(entry.bytes for entry in folders)
        click.echo(f"{cache_root()}: {len(folders)} folder{'s' * (len(folders) != 1)}, {_size(total)}")


@cache_group.command("clean")
@click.option("--unused-days", type=click.FloatRange(min=0), metavar="DAYS",
              help="Remove the folders no run has used for DAYS days.")
@click.option("--all", "everything", is_flag=True, help="Remove every folder (not while a run uses one).")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
def clean_command(unused_days: float | None, everything: bool, dry_run: bool) -> None:
    """Remove folders of the cache: those unused for --unused-days DAYS, or --all. A run that needs
    a removed folder prepares it again."""
    from seqkit.cache_folders import clean
    from seqkit.errors import SeqkitError

    if (unused_days is None) == (not everything):
        raise SeqkitError("cache clean: give --unused-days DAYS or --all (one of them)")
    removed = clean(unused_days=unused_days, everything=everything, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for entry in removed:
        click.echo(f"{verb} {entry.folder} ({_size(entry.bytes)}, used {_ago(entry.last_used)})")
    click.echo(f"{verb} {len(removed)} folder{'s' * (len(removed) != 1)}, "
               f"{_size(sum(entry.bytes for entry in removed))}")


def _size(count: int) -> str:
    return f"{count / 2**20:.1f} MiB"


def _ago(moment: float) -> str:
    days = (time.time() - moment) / 86400
    return f"{days:.1f} days ago" if days >= 1 else f"{days * 24:.1f} hours ago"
