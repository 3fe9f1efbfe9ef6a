"""The verbs that use a trained model: generate (with attention maps) and score."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import click

from seqkit.cli.group import plugin_manager
from seqkit.errors import ConfigError, DataError, GenerationError, SeqkitError


def device_options(command):
    """--backend and --precision, shared by the verbs that run a trained model."""
    precisions = click.Choice(["auto", "fp32", "bf16", "fp16", "int8"])
    command = click.option("--precision", type=precisions, default="fp32", show_default=True,
                           help="Autocast precision: fp32 unless asked; auto takes the backend's "
                                "default precision, as `seqkit backends` lists it; int8 quantizes "
                                "the linear and recurrent layers (CPU only: --backend auto picks "
                                "the CPU).")(command)
    return click.option("--backend", "backend_name", default="auto", show_default=True,
                        help="Device backend: cpu, cuda, mps, a plugin's, or auto (the first "
                             "available, marked * by `seqkit backends`).")(command)


def _load(ctx: click.Context, run: Path, backend_name: str, precision: str):
    from seqkit.api import load
    from seqkit.backends import get_backend, resolve_precision

    manager = plugin_manager(ctx)
    if precision == "int8":  # the CPU's quantized kernels, whatever else the machine has
        backend = get_backend("cpu" if backend_name == "auto" else backend_name, manager)
        if backend.device().type != "cpu":
            raise ConfigError(f"--precision int8: runs on the CPU only, not on backend {backend.name!r} "
                              "(use --backend cpu)")
        return load(run, manager=manager, device=backend.device(), precision=precision)
    backend = get_backend(backend_name, manager)
    precision = resolve_precision(backend, precision)
    return load(run, manager=manager, device=backend.device(), precision=precision)


def _search_options(**options):
    from seqkit.generate import SearchConfig

    try:
        return SearchConfig(**options)
    except ConfigError as exc:  # name the flag, not the field
        flag = f"--{exc.key.replace('_', '-')}" if exc.key else "option"
        raise ConfigError(f"{flag}: {str(exc).removeprefix(f'{exc.key}: ')}") from None


def _flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


@contextlib.contextmanager
def _named_by_flag():
    """Errors of the search options raised while generating, told by their flags: a --max-len the
    decoder cannot hold, a --min-len that --no-repeat-ngram makes impossible."""
    from seqkit.generate import SearchConfig

    fields = {f.name for f in dataclasses.fields(SearchConfig)}
    try:
        yield
    except GenerationError as exc:
        names = "|".join(sorted(f for f in fields if "_" in f))
        raise GenerationError(re.sub(rf"\b({names})\b", lambda m: _flag(m.group(1)), str(exc))) from None
    except ConfigError as exc:
        if exc.key not in fields:
            raise
        raise ConfigError(f"{_flag(exc.key)}: {str(exc).removeprefix(f'{exc.key}: ')}") from None


def _text_lines(stream: BinaryIO, name: str) -> Iterator[str]:
    """The lines of a byte stream as text, without line ends; bytes that are not UTF-8 are an
    error naming the file and line (nothing is guessed or replaced)."""
    for number, line in enumerate(stream, 1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{name}:{number}: not UTF-8 text (byte {exc.start + 1})") from None
        yield text.rstrip("\r\n")


def _chunks(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# Text output is one line per output: an output holding a line break would otherwise take two.
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def escape_line(text: str) -> str:
    r"""``text`` on one line: backslash, tab, newline and CR written as ``\\ \t \n \r``, the rule of
    a TSV file read with ``task.escapes = true``, so every output reads back as it was."""
    return text.translate(_ESCAPES)


def _format(text, score: float | None, with_score: bool) -> str:
    shown = escape_line(text) if isinstance(text, str) else json.dumps(text)
    if with_score:
        return f"{'' if score is None else f'{score:.4f}'}\t{shown}"
    return shown


def _emit(inputs: list[str], found, fmt: str, nbest: int, with_score: bool,
          unknown: UnknownInputs | None = None) -> None:
    for text, generations in zip(inputs, found, strict=True):
        if fmt == "jsonl":
            hypotheses = [{"output": g.text, "score": g.score} for g in generations]
            record = {"input": text, **(hypotheses[0] if nbest == 1 else {"outputs": hypotheses}),
                      "unknown_tokens": _unknown_tokens(generations)}
            click.echo(json.dumps(record, ensure_ascii=False))
        else:
            for g in generations[:nbest]:
                click.echo(_format(g.text, g.score, with_score))
        if unknown is not None:
            unknown.add(_unknown_tokens(generations))
    sys.stdout.flush()


def _unknown_tokens(generations) -> int:
    return generations[0].unknown_tokens if generations else 0


class UnknownInputs:
    """Which inputs held tokens the model does not know (<unk>), for one warning on stderr
    when the output is text (jsonl says it on each line: "unknown_tokens")."""

    def __init__(self, fmt: str):
        self.fmt, self.inputs, self.flagged = fmt, 0, {}

    def add(self, count: int) -> None:
        self.inputs += 1
        if count:
            self.flagged[self.inputs] = count

    def warn(self) -> None:
        """The warning for the inputs seen since the last one (if any held unknown tokens)."""
        flagged, total = self.flagged, self.inputs
        self.flagged, self.inputs = {}, 0
        if self.fmt != "text" or not flagged:
            return
        why = "words or characters its training data did not have"
        if total == 1:
            count = next(iter(flagged.values()))
            text = (f"the input holds {count} token{'' if count == 1 else 's'} the model does not know "
                    f"(<unk>: {why}); its output is a guess")
        else:
            numbers = list(flagged)
            shown = ", ".join(str(i) for i in numbers[:10]) + (", ..." if len(numbers) > 10 else "")
            one = len(numbers) == 1
            text = (f"{len(numbers)} of {total} inputs hold{'s' if one else ''} tokens the model does "
                    f"not know (<unk>): input{'' if one else 's'} {shown} ({why}); "
                    f"{'its output is a guess' if one else 'their outputs are guesses'}")
        click.echo(f"seqkit: warning: {text}", err=True)


@click.command()
@click.argument("run", type=click.Path(path_type=Path))  # seqkit.load names a missing one
@click.argument("texts", nargs=-1)
@click.option("--input", "input_file",
              type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=str),
              help="Read inputs from this file, one per line ('-': standard input, the default).")
@click.option("--beam", default=1, show_default=True, help="Beam size (1: greedy search).")
@click.option("--nbest", default=1, show_default=True, help="Outputs per input, best first (at most --beam).")
@click.option("--sample", is_flag=True, help="Sample each token instead of searching.")
@click.option("--temperature", default=1.0, show_default=True, help="Sampling: divide logits by this.")
@click.option("--top-k", default=0, show_default=True, help="Sampling: keep the k likeliest (0: all).")
@click.option("--top-p", default=1.0, show_default=True, help="Sampling: keep the top mass p.")
@click.option("--seed", type=int, help="Sampling: the same seed draws the same outputs.")
@click.option("--max-len", type=int, help="Most new tokens [default: the config's data.max_target_len].")
@click.option("--min-len", default=0, show_default=True, help="Fewest new tokens before end of sequence.")
@click.option("--length-penalty", default=0.0, show_default=True,
              help="GNMT alpha: beam search ranks by score / ((5 + length) / 6) ** alpha.")
@click.option("--no-repeat-ngram", default=0, show_default=True, help="No n-gram of this size occurs twice.")
@click.option("--scores", "with_scores", is_flag=True,
              help="Text format: prefix each output with its total log-probability and a tab.")
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text", show_default=True,
              help="text: one output per line (--nbest N: N lines per input), with backslash, tab, "
                   "newline and CR written as \\\\, \\t, \\n, \\r (as task.escapes reads them); "
                   "jsonl: one object per input, outputs raw (JSON escapes them).")
@click.option("--batch-size", default=32, show_default=True, help="Inputs decoded together (at least 1).")
@click.option("--compile", "compile_", is_flag=True,
              help="torch.compile the decode step (Transformer decoders): the first inputs wait for "
                   "the compilation (tens of seconds on a CPU), later ones reuse it; on CUDA with "
                   "CUDA graphs.")
@device_options
@click.option("--interactive", is_flag=True,
              help="Prompt for one input at a time; Ctrl-D (end of input) or Ctrl-C leaves.")
@click.option("--attention", "attention_png", type=click.Path(dir_okay=False, path_type=Path),
              help="Draw the output's attention over the source (one input) to this PNG.")
@click.pass_context
def generate(ctx: click.Context, run: Path, texts: tuple[str, ...], input_file, beam: int, nbest: int,
             sample: bool, temperature: float, top_k: int, top_p: float, seed: int | None,
             max_len: int | None, min_len: int, length_penalty: float, no_repeat_ngram: int,
             with_scores: bool, fmt: str, batch_size: int, compile_: bool, backend_name: str, precision: str,
             interactive: bool, attention_png: Path | None) -> None:
    """Generate from a run folder's best model (or a checkpoint) for each TEXT, or for each line
    of --input or standard input, writing one output per line as results are ready. A language
    model continues each text; a classifier prints its label."""
    from seqkit.inference import search

    if texts and input_file is not None:
        raise SeqkitError("give TEXT arguments or --input, not both")
    if batch_size < 1:
        raise SeqkitError(f"--batch-size: must be at least 1, got {batch_size}")
    model = _load(ctx, run, backend_name, precision)
    default_len = model.config.data.max_target_len
    options = _search_options(max_len=default_len if max_len is None else max_len, min_len=min_len,
                              beam=beam, nbest=nbest, length_penalty=length_penalty,
                              no_repeat_ngram=no_repeat_ngram, sample=sample, temperature=temperature,
                              top_k=top_k, top_p=top_p, seed=seed, compile=compile_,
                              scores=with_scores or fmt != "text")  # else none is shown: not computed

    unknown = UnknownInputs(fmt)

    def run_inputs(inputs: list[str]) -> None:
        with model.autocast(), _named_by_flag():
            found = search(model.model, model.task, model.config, inputs, options, batch_size)
        _emit(inputs, found, fmt, nbest, with_scores, unknown)
        if interactive:
            unknown.warn()  # a person typing wants it beside the output

    if interactive and attention_png is None:
        _interactive(run_inputs)
    elif texts:
        if attention_png is not None:
            with _named_by_flag():
                _draw_attention(model, list(texts), options, attention_png, fmt, with_scores, unknown)
        else:
            run_inputs(list(texts))
    else:
        from_stdin = input_file in (None, "-")
        name = "<stdin>" if from_stdin else input_file
        if from_stdin and _is_terminal(sys.stdin):  # else a person sees nothing happen
            click.echo("seqkit: reading inputs from standard input, one per line, until Ctrl-D "
                       "(or give TEXT arguments, --input FILE or --interactive)", err=True)
        with contextlib.nullcontext(sys.stdin.buffer) if from_stdin else \
                open(input_file, "rb") as stream:
            if attention_png is not None:
                with _named_by_flag():
                    _draw_attention(model, list(_text_lines(stream, name)), options, attention_png, fmt,
                                    with_scores, unknown)
            else:
                for chunk in _chunks(_text_lines(stream, name), 1 if _is_terminal(stream) else batch_size):
                    run_inputs(chunk)
    unknown.warn()


def _is_terminal(stream) -> bool:
    """Whether a person types into ``stream`` (a function, so tests can stand in for one)."""
    return stream.isatty()


def _interactive(run_inputs) -> None:
    terminal = _is_terminal(sys.stdin)
    if terminal:
        click.echo("seqkit: type an input and press Enter; Ctrl-D (end of input) or Ctrl-C leaves",
                   err=True)
    number = 0
    while True:
        number += 1
        try:
            line = input("> " if terminal else "")
        except (EOFError, KeyboardInterrupt):
            click.echo("", err=True)
            return
        except UnicodeDecodeError as exc:
            raise DataError(f"<stdin>:{number}: not UTF-8 text (byte {exc.start + 1})") from None
        run_inputs([line])


def _draw_attention(model, inputs: list[str], options, path: Path, fmt: str, with_scores: bool,
                    unknown: UnknownInputs) -> None:
    from seqkit.tools import plot_attention

    if len(inputs) != 1:
        raise SeqkitError(f"--attention draws one input; got {len(inputs)}")
    generation, attention = model.attention(inputs[0], **vars(options))
    _emit(inputs, [[generation]], fmt, 1, with_scores, unknown)
    click.echo(f"attention map: {plot_attention(attention, path, title=inputs[0])}", err=True)


@click.command()
@click.argument("run", type=click.Path(path_type=Path))  # seqkit.load names a missing one
@click.option("--data", "data", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Examples in the task's format (translation: source and target; a language model: texts).")
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text", show_default=True,
              help="text: one total log-probability per line; jsonl: source, target and score.")
@click.option("--batch-size", default=64, show_default=True, help="Examples scored together (at least 1).")
@device_options
@click.pass_context
def score(ctx: click.Context, run: Path, data: Path, fmt: str, batch_size: int, backend_name: str,
          precision: str) -> None:
    """Total log-probability of each target in --data given its source, end of sequence
    included (for rescoring, and for checking search): one line per example."""
    if batch_size < 1:
        raise SeqkitError(f"--batch-size: must be at least 1, got {batch_size}")
    model = _load(ctx, run, backend_name, precision)
    model.use_data("test", data)
    examples = list(model.task.examples("test"))
    sources = None if model.task.model_kind == "language_model" else [e.source for e in examples]
    targets = [e.target for e in examples]
    scores = model.score(sources, targets, batch_size=batch_size) if sources is not None else \
        model.score(targets, batch_size=batch_size)
    for example, value in zip(examples, scores, strict=True):
        if fmt == "jsonl":
            click.echo(json.dumps({"source": example.source, "target": example.target, "score": value},
                                  ensure_ascii=False))
        else:
            click.echo("" if value is None else f"{value:.4f}")
    known = [v for v in scores if v is not None]
    if known:
        mean = sum(known) / len(known)
        click.echo(f"scored {len(known)} targets: mean log-probability {mean:.4f}", err=True)
