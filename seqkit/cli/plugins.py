"""`seqkit plugins`, `seqkit plugins check` and `seqkit backends`: what is installed and whether it works."""

from __future__ import annotations

import json
import sys

import click

from seqkit.cli.group import plugin_manager
from seqkit.errors import SeqkitError


@click.group(invoke_without_command=True)
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
    """Run the conformance suite on the encoders, decoders, tasks and backends of plugin NAME (all
    plugins when NAME is left out). NAME's encoders and decoders are paired with the built-in ones
    and with those of other plugins whose own checks pass; pairs with a broken plugin are skipped
    and listed. Exit status 0 unless a check fails (warnings and unsupported features pass)."""
    from seqkit.testing import run_check
    from seqkit.testing_suite import Report, plan

    manager = plugin_manager(ctx)
    if name is not None and name not in manager.plugins:
        raise SeqkitError(f"no plugin named {name!r}; installed: {', '.join(manager.plugins)}")
    if name is not None and manager.plugins[name].status != "ok":
        info = manager.plugins[name]
        raise SeqkitError(f"plugin {name} is {info.status}" + (f": {info.error}" if info.error else ""))
    checks, skipped = plan(manager, name)
    if not checks:
        raise SeqkitError(f"plugin {name or '(any)'} registers no encoder, decoder, task or backend to check")
    with click.progressbar(checks, label="conformance", file=sys.stderr,
                           item_show_func=lambda c: c and f"{c.subject}: {c.name}") as bar:
        report = Report([run_check(check) for check in bar], skipped)
    for outcome in report.outcomes:
        if outcome.status != "passed" or verbose:
            detail = f": {outcome.detail}" if outcome.detail else ""
            click.echo(f"{outcome.status.upper():11} {outcome.check.subject}: {outcome.check.name}{detail}")
    for line in report.skipped:
        click.echo(line)
    counts = report.counts()
    click.echo(", ".join(f"{n} {status}" for status, n in counts.items()))
    if counts["failed"]:
        ctx.exit(1)


# -- seqkit backends ------------------------------------------------------------------------------


@click.command()
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
    width = max((len(row["name"]) for row in rows), default=0)
    for row in rows:
        mark = "*" if row["name"] == first_available else " "
        state = "available" if row["available"] else "not available"
        detail = f"  {row['device']}, {row['default_precision']}" if row["available"] else ""
        click.echo(f"{mark} {row['name']:<{width}} {state}{detail}")
