"""`seqkit export` and `seqkit import`: models to and from other frameworks, verified."""

from __future__ import annotations

from pathlib import Path

import click

from seqkit.cli.group import plugin_manager
from seqkit.errors import DataError
from seqkit.exporters import DEFAULT_CHECK, EXPORTERS


@click.command("export")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--to", "to", required=True, type=click.Choice(sorted(EXPORTERS)),
              help="Format: hf (a Hugging Face MarianMT folder).")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--check", default=DEFAULT_CHECK, show_default=True, type=click.IntRange(min=1),
              help="Verify on this many sources of the run's data.")
@click.option("--split", help="Which split the sources come from (default: test, else valid).")
@click.option("--check-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Verify on these sources instead (one per line).")
@click.pass_context
def export_command(ctx: click.Context, run: Path, to: str, folder: Path, check: int, split: str | None,
                   check_file: Path | None) -> None:
    """Export the run folder RUN (its best model) to FOLDER, a new folder that transformers
    loads offline (AutoModelForSeq2SeqLM.from_pretrained(FOLDER), AutoTokenizer too).

    Before FOLDER appears, sources of the run's test split (or --check-file) are decoded greedily
    by seqkit and by the exported model; any difference in token ids is an error naming the input,
    and nothing is written. Options the format cannot express (pre-norm, learned positions, a
    recurrent part, separate source and target vocabularies) are one-line errors naming them."""
    from seqkit.api import export

    texts = None
    if check_file is not None:
        try:
            texts = [line for line in check_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        except OSError as exc:
            raise DataError(f"{check_file}: cannot read: {exc.strerror}") from None
    result = export(run, to, folder, check=check, split=split, texts=texts, manager=plugin_manager(ctx))
    source = f"of the {result.split} split" if result.split else f"from {check_file}"
    click.echo(f"{result.folder}: {', '.join(result.files)}")
    click.echo(f"verified: {result.checked} inputs {source} decoded identically by seqkit and the export")


@click.group("import")
def import_group() -> None:
    """Make a seqkit run folder from another framework's model folder."""


@import_group.command("hf")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The run folder to make.")
@click.option("--check", default=8, show_default=True, type=click.IntRange(min=0),
              help="Sample texts checked: same token ids and greedy outputs as transformers (0: none).")
@click.pass_context
def import_hf_command(ctx: click.Context, folder: Path, out: Path, check: int) -> None:
    """Import a local Hugging Face MarianMT FOLDER (an Opus-MT model: config.json,
    model.safetensors, source.spm, target.spm, vocab.json) as the run folder --out, which
    `seqkit generate`, `eval --data` and `score` use, and fine-tuning starts from
    (seqkit.train(config, init=RUN)). Nothing is downloaded."""
    from seqkit.api import import_hf

    result = import_hf(folder, out, check=check, manager=plugin_manager(ctx))
    click.echo(f"{result.folder}: imported ({result.vocab_size:,} tokens); {result.checked} sample texts "
               "tokenized and decoded as transformers does")
