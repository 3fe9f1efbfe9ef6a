"""`seqkit eval`: a run's metrics on a split or a data file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

from seqkit.cli.group import plugin_manager
from seqkit.errors import SeqkitError


@click.command("eval")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--split", default="test", show_default=True, help="Which split of the task's data.")
@click.option("--data", type=click.Path(dir_okay=False, path_type=Path),
              help="Evaluate on this file (in the task's format) instead of a configured split.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object.")
@click.option("--precision", type=click.Choice(["fp32", "int8"]), default="fp32", show_default=True,
              help="int8: the linear and recurrent layers quantized, as `seqkit generate --precision "
                   "int8` runs them (on the CPU, where eval runs).")
@click.pass_context
def eval_command(ctx: click.Context, run: Path, split: str, data: Path | None, as_json: bool,
                 precision: str) -> None:
    """Evaluate a run folder's best model (or a checkpoint file): loss, ppl, token_accuracy,
    exact_match (a fraction), bleu, chrf, ... as the task defines them."""
    from seqkit.api import load

    model = load(run, manager=plugin_manager(ctx), precision=precision)  # a missing path: one line
    if data is not None:
        if not data.exists():
            raise SeqkitError(f"{data}: no such data file")
        model.use_data(split, data)
    metrics, _ = model.evaluate(split)
    if as_json:
        click.echo(json.dumps({key: _json_number(value) for key, value in metrics.items()},
                              allow_nan=False))
    else:
        for key, value in metrics.items():
            click.echo(f"{key:>16}  {_shown(value)}")


SIGNIFICANT_DIGITS = 6  # 100.00000000000004 is 100: summation noise, not information


def _rounded(value):
    """A float metric to SIGNIFICANT_DIGITS significant digits; integers and the rest as they are."""
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    return value


def _json_number(value):
    """A metric as JSON allows it: rounded, and null for NaN and infinities (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return _rounded(value)


def _shown(value) -> str:
    """A metric for the text table: rounded as in JSON, without a trailing .0; nan and inf as
    such (a person reads them, JSON cannot hold them)."""
    value = _rounded(value)
    return f"{value:.{SIGNIFICANT_DIGITS}g}" if isinstance(value, float) else str(value)
