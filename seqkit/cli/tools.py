"""`seqkit average` and `seqkit plot`: tools over checkpoints and run folders."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the averaged checkpoint.")
def average(checkpoints: tuple[Path, ...], output: Path) -> None:
    """Average the weights of CHECKPOINTS (of one model) into OUTPUT."""
    from seqkit.tools import average_checkpoints

    click.echo(str(average_checkpoints(list(checkpoints), output)))


# Click's exists=True would answer a missing folder with four lines of usage text; the commands
# check paths themselves and say what is missing in one line.
@click.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="PNG file (default: RUN/curves.png).")
def plot(run: Path, output: Path | None) -> None:
    """Draw a run's training loss and evaluation metrics against steps to a PNG."""
    from seqkit.tools import plot_run

    click.echo(str(plot_run(run, output)))
