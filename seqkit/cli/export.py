"""`seqkit export` and `seqkit import`: models to and from other frameworks, verified."""

from __future__ import annotations

from pathlib import Path

import click

from seqkit.cli.group import plugin_manager
from seqkit.errors import DataError
from seqkit.exporters import DEFAULT_CHECK, EXPORTERS

QUANTIZATIONS = ("float32", "int8", "int8_float32")  # seqkit.export_ct2.QUANTIZATIONS (no torch here)


@click.command("export")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--to", "to", required=True, type=click.Choice(sorted(EXPORTERS)),
              help="Format: hf (a Hugging Face MarianMT folder) or ctranslate2 (a CTranslate2 model "
                   "folder with the run's tokenizer).")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--quantization", type=click.Choice(QUANTIZATIONS), default=None,
              help="ctranslate2: the weights' type [float32]; int8 and int8_float32 are checked for "
                   "agreement with seqkit's outputs (and BLEU) instead of identity.")
@click.option("--check", default=DEFAULT_CHECK, show_default=True, type=click.IntRange(min=1),
              help="Verify on this many sources of the run's data.")
@click.option("--split", help="Which split the sources come from (default: test, else valid).")
@click.option("--check-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Verify on these sources instead (one per line).")
@click.pass_context
def export_command(ctx: click.Context, run: Path, to: str, folder: Path, quantization: str | None,
                   check: int, split: str | None, check_file: Path | None) -> None:
    """Export the run folder RUN (its best model) to FOLDER, a new folder: with --to hf, one that
    transformers loads offline (AutoModelForSeq2SeqLM.from_pretrained(FOLDER), AutoTokenizer too);
    with --to ctranslate2, a ctranslate2.Translator folder with the run's tokenizer and a README.md
    showing how to translate with both.

    Before FOLDER appears, sources of the run's test split (or --check-file) are decoded greedily
    by seqkit and by the exported model; any difference in token ids is an error naming the input,
    and nothing is written (quantized ctranslate2 weights report the share of identical outputs
    and the BLEU difference instead). Options the format cannot express (for hf: pre-norm, learned
    positions, separate source and target vocabularies; for both: a recurrent part) are one-line
    errors naming them."""
    from seqkit.api import export

    texts = None
    if check_file is not None:
        try:
            texts = [line for line in check_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        except OSError as exc:
            raise DataError(f"{check_file}: cannot read: {exc.strerror}") from None
    result = export(run, to, folder, check=check, split=split, texts=texts, quantization=quantization,
                    manager=plugin_manager(ctx))
    source = f"of the {result.split} split" if result.split else f"from {check_file}"
    click.echo(f"{result.folder}: {', '.join(result.files)}")
    if result.quantization in (None, "float32"):
        click.echo(f"verified: {result.checked} inputs {source} decoded identically by seqkit and the export")
        return
    same = round(result.agreement * result.checked)
    click.echo(f"{result.quantization} weights: {same} of {result.checked} inputs {source} "
               f"({100 * result.agreement:.1f}%) decoded identically by seqkit and the export")
    if result.bleu is not None:
        bleu = result.bleu
        click.echo(f"BLEU: seqkit {bleu['seqkit']:.2f}, export {bleu['export']:.2f} "
                   f"({bleu['difference']:+.2f})")


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
