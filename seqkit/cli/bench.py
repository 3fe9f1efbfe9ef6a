"""`seqkit bench`: the command line of seqkit.bench."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from seqkit.bench.settings import DEFAULT_ARCHITECTURES, BenchSettings
from seqkit.cli.group import plugin_manager
from seqkit.errors import ConfigError

DEFAULTS = BenchSettings()


def _split(values: tuple[str, ...]) -> list[str]:
    """Repeated and comma-separated values, in order: ("a,b", "c") -> [a, b, c]."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _lengths(values: tuple[str, ...], flag: str = "--lengths") -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in _split(values))
    except ValueError:
        raise ConfigError(f"{flag}: expected integers, got {', '.join(values)}") from None


class _Progress:
    """One line on stderr per case; rewritten in place on a terminal."""

    def __init__(self):
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int, label: str) -> None:
        line = f"bench [{done}/{total}] {label}"
        if self.tty:
            click.echo(f"\r\033[K{line}", err=True, nl=done == total)
        else:
            click.echo(line, err=True)


@click.command("bench")
@click.option("--arch", "architectures", multiple=True, metavar="NAME[,NAME...]",
              help="Architectures to time (repeatable or comma-separated): a registered name "
                   "(encoder and decoder of that name) or ENCODER+DECODER, e.g. lstm+transformer. "
                   f"Default: {','.join(DEFAULT_ARCHITECTURES)}.")
@click.option("--mode", "modes", multiple=True, metavar="MODE[,MODE...]",
              help="train (forward, loss, backward, AdamW step), encode (encoder forward at batch "
                   "1, inference mode), generate (exactly L new tokens at each --generate-batch: "
                   "greedy through the cache, greedy recomputing the prefix, beam search of 4). "
                   f"Default: {','.join(DEFAULTS.modes)}.")
@click.option("--lengths", "lengths", multiple=True, metavar="L[,L...]",
              help="Source and target lengths. Default: "
                   f"{','.join(map(str, DEFAULTS.lengths))}.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Rows per training batch at every length (overrides --batch-tokens).")
@click.option("--batch-tokens", type=int, default=DEFAULTS.batch_tokens, show_default=True,
              help="Training batch size as a token budget: batch = tokens // length.")
@click.option("--generate-batch", "generate_batches", multiple=True, metavar="B[,B...]",
              help="generate: rows decoded together. Default: "
                   f"{','.join(map(str, DEFAULTS.generate_batches))}.")
@click.option("--d-model", type=int, default=DEFAULTS.d_model, show_default=True,
              help="Model width (embeddings, encoder and decoder).")
@click.option("--layers", type=int, default=DEFAULTS.layers, show_default=True,
              help="Layers of the encoder and of the decoder.")
@click.option("--heads", type=int, default=DEFAULTS.heads, show_default=True,
              help="Attention heads, for components that have them.")
@click.option("--ffn-size", type=int, default=None, help="Feed-forward width [component default].")
@click.option("--dropout", type=float, default=DEFAULTS.dropout, show_default=True,
              help="Embedding dropout and the components' dropout.")
@click.option("--vocab", type=int, default=DEFAULTS.vocab, show_default=True,
              help="Source and target vocabulary size of the random tokens.")
@click.option("--set", "overrides", multiple=True, metavar="model.KEY=VALUE",
              help="Override a [model] option for every architecture, e.g. "
                   "--set model.decoder.attention=dot (VALUE is TOML).")
@click.option("--backend", default="auto", show_default=True, help="cpu, cuda, mps or auto.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto",
              show_default=True, help="Autocast precision; auto takes the backend's default precision.")
@click.option("--compile", "compile_", is_flag=True,
              help="torch.compile the models (and the baseline); compilation runs in the warm-up.")
@click.option("--warmup", type=int, default=DEFAULTS.warmup, show_default=True,
              help="Untimed steps per case and implementation.")
@click.option("--repeat", type=int, default=DEFAULTS.repeat, show_default=True,
              help="Timed steps per case and implementation; rows show median and min-max.")
@click.option("--baseline", type=click.Choice(["raw", "ctranslate2"]), default=None,
              help="raw: also time the same-shaped model written in raw PyTorch (nn.Transformer, "
                   "nn.LSTM/GRU/RNN + Luong attention), interleaved with seqkit's steps, and "
                   "print seqkit/raw tokens/s ratios. ctranslate2 (--mode generate, Transformer; "
                   "pip install 'seqkit[ct2]'): also decode with the same weights exported to "
                   "CTranslate2, float32 and int8, greedy and beam 4, and print CTranslate2/seqkit "
                   "tokens/s ratios.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch.set_num_threads for the run [torch's default: all cores].")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the initial weights and the random batches.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the results (rows and run details) as JSON.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the rows as CSV.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Draw encode latency and training tokens/s against length (PNG).")
@click.pass_context
def bench(ctx: click.Context, architectures, modes, lengths, batch_size, batch_tokens, generate_batches,
          d_model, layers, heads, ffn_size, dropout, vocab, overrides, backend, precision, compile_, warmup,
          repeat, baseline, threads, seed, json_path, csv_path, plot_path) -> None:
    """Time training steps and encode latency of seqkit's architectures against sequence length.

    Each architecture is the seq2seq model `seqkit run` would build: embeddings, encoder, decoder,
    tied output head. Batches are random tokens without padding. Every step is timed between two
    backend synchronizations; each row gives the median and min-max of --repeat steps as tokens/s
    and ms/step, with peak memory, parameters, FLOPs per step (torch.utils.flop_counter) and MFU
    (null where the backend has no peak FLOP/s, as on CPU).

    \b
    Examples:
      seqkit bench
      seqkit bench --arch lstm,transformer --lengths 32,128,512 --mode encode --plot chart.png
      seqkit bench --baseline raw --threads 2 --json bench.json
      seqkit bench --arch transformer --mode generate --baseline ctranslate2 --threads 1
    """
    from seqkit.bench.report import format_table, write_csv, write_json, write_plot
    from seqkit.bench.runner import run_bench

    settings = BenchSettings(
        architectures=tuple(_split(architectures)) or DEFAULTS.architectures,
        modes=tuple(_split(modes)) or DEFAULTS.modes,
        lengths=_lengths(lengths) or DEFAULTS.lengths,
        batch_size=batch_size, batch_tokens=batch_tokens, d_model=d_model, layers=layers,
        generate_batches=_lengths(generate_batches, "--generate-batch") or DEFAULTS.generate_batches,
        heads=heads, ffn_size=ffn_size, dropout=dropout, vocab=vocab, overrides=overrides,
        backend=backend, precision=precision, compile=compile_, warmup=warmup, repeat=repeat,
        baseline=baseline, threads=threads, seed=seed)
    result = run_bench(settings, plugin_manager(ctx), progress=_Progress())
    click.echo(format_table(result))
    if json_path:
        write_json(result, json_path)
    if csv_path:
        write_csv(result, csv_path)
    if plot_path:
        write_plot(result, plot_path)
