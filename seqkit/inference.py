"""Texts in, texts out: generation, scoring and attention maps for a trained model and its task.
``seqkit.trained.Model`` (what ``seqkit.load`` returns) and the ``generate`` / ``score`` verbs call these."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from seqkit.config import RunConfig
from seqkit.errors import ConfigError, GenerationError
from seqkit.generate import Hypothesis, SearchConfig, generate, score
from seqkit.interfaces import BOS, EOS, PAD, UNK, Example, Task
from seqkit.model import SeqModel

TOKEN_KINDS = ("seq2seq", "language_model")


@dataclass
class Generation:
    """One output for one input: its text, its total log-probability (None for an empty input,
    a class or values), its new token ids, and how many tokens of the input the model's
    vocabulary did not know (``<unk>``: words, capitals, digits or characters the training data
    did not have; the output for such an input is a guess)."""

    text: str | list[float]
    score: float | None
    tokens: list[int]
    unknown_tokens: int = 0


@dataclass
class Prepared:
    """Inputs as the model takes them: for each text, its source ids (seq2seq, None when empty)
    or its prompt ids (a language model), and the number of its tokens that are UNK."""

    sources: list[Tensor | None]
    prompts: list[list[int]]
    unknown: list[int]


def as_texts(value, name: str) -> tuple[list[str], bool]:
    """``value`` as a list of texts, and whether it was one text: a ``str`` is one text (never a
    sequence of one-character texts); a list or tuple must hold only strings."""
    if isinstance(value, str):
        return [value], True
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{name}: must be a string or a list of strings, got {type(value).__name__}")
    for i, text in enumerate(value):
        if not isinstance(text, str):
            raise ConfigError(f"{name}[{i}]: must be a string, got {type(text).__name__}")
    return list(value), False


def check_batch_size(batch_size) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"batch_size: must be an integer >= 1, got {batch_size!r}", "batch_size")


def prepare(task: Task, config: RunConfig, texts: Sequence[str]) -> Prepared:
    kind, data = task.model_kind, config.data
    if kind == "language_model":
        prompts = [task.encode(Example(None, text)).target.tolist()[1:-1] if text else [] for text in texts]
        return Prepared([None] * len(texts), prompts, [prompt.count(UNK) for prompt in prompts])
    sources, unknown = [], []
    for text in texts:
        source = task.encode_source(text) if text != "" else None
        unknown.append(count_unknown(source))
        source = source[: data.max_source_len] if source is not None else None
        sources.append(source if source is not None and source.size(0) > 0 else None)
    return Prepared(sources, [[] for _ in texts], unknown)


def count_unknown(ids: Tensor | None) -> int:
    """UNK ids among token ids (every vocabulary has UNK at the same id); 0 for float features."""
    if ids is None or ids.is_floating_point():
        return 0
    return int((ids == UNK).sum())


def search(model: SeqModel, task: Task, config: RunConfig, texts: Sequence[str] | str, options: SearchConfig,
           batch_size: int = 64) -> list[list[Generation]] | list[Generation]:
    """The ``options.nbest`` best outputs of each text, best first. Texts run in batches of
    similar length; an empty seq2seq source gives one empty output; a language model continues
    each text (an empty one is generated from nothing) and returns prompt plus continuation.
    One ``str`` is one text: its outputs alone come back, not a list of one."""
    texts, single = as_texts(texts, "texts")
    check_batch_size(batch_size)
    results = _search(model, task, config, texts, options, batch_size)
    return results[0] if single else results


def _search(model: SeqModel, task: Task, config: RunConfig, texts: list[str], options: SearchConfig,
            batch_size: int) -> list[list[Generation]]:
    prepared = prepare(task, config, texts)
    if model.kind not in TOKEN_KINDS:
        values = predict(model, task, config, texts, batch_size, prepared)
        return [[Generation(value, None, [], unknown)] for value, unknown in zip(values, prepared.unknown,
                                                                                 strict=True)]
    device = next(model.parameters()).device
    # an empty seq2seq source: empty outputs, as many as asked for (--nbest N prints N lines each)
    results: list[list[Generation]] = [[Generation("", None, [])] * options.nbest for _ in texts]
    rows = [i for i in range(len(texts)) if model.kind == "language_model" or prepared.sources[i] is not None]
    for chunk in _batches(rows, lambda i: _length(prepared, i), batch_size):
        try:
            if model.kind == "language_model":
                found = generate(model, config=options, prompts=[prepared.prompts[i] for i in chunk])
            else:
                source, mask = pad_sources([prepared.sources[i] for i in chunk])
                found = generate(model, source.to(device), mask.to(device), options)
        except GenerationError as exc:
            if exc.row is None:
                raise
            raise GenerationError(f"{exc} (input {chunk[exc.row] + 1})") from None
        for i, hypotheses in zip(chunk, found, strict=True):
            results[i] = [_generation(task, prepared.prompts[i], h, prepared.unknown[i]) for h in hypotheses]
    return results


def _generation(task: Task, prompt: list[int], hypothesis: Hypothesis, unknown: int) -> Generation:
    text = task.decode(torch.tensor(prompt + hypothesis.tokens, dtype=torch.long))
    return Generation(text, hypothesis.score, hypothesis.tokens, unknown)


def _length(prepared: Prepared, i: int) -> int:
    source = prepared.sources[i]
    return source.size(0) if source is not None else len(prepared.prompts[i])


def _batches(rows: list[int], length, batch_size: int) -> Iterator[list[int]]:
    """Rows in batches of at most ``batch_size``, longest first so a batch pads little."""
    ordered = sorted(rows, key=length, reverse=True)
    for start in range(0, len(ordered), batch_size):
        yield ordered[start: start + batch_size]


def predict(model: SeqModel, task: Task, config: RunConfig, texts: Sequence[str],
            batch_size: int, prepared: Prepared | None = None) -> list[str | list[float]]:
    """A classifier's label or a regressor's values for each source."""
    device = next(model.parameters()).device
    outputs: list = [None] * len(texts)
    prepared = prepared or prepare(task, config, texts)
    empty = [i for i, source in enumerate(prepared.sources) if source is None]
    if empty:
        raise ConfigError(f"input {empty[0] + 1}: empty; a {model.kind} needs a source to predict from")
    with torch.inference_mode():
        for chunk in _batches(list(range(len(texts))), lambda i: _length(prepared, i), batch_size):
            source, mask = pad_sources([prepared.sources[i] for i in chunk])
            values = model(source.to(device), mask.to(device))
            values = values.argmax(-1) if model.kind == "classifier" else values
            for i, value in zip(chunk, values.cpu(), strict=True):
                outputs[i] = task.decode(value)
    return outputs


def score_texts(model: SeqModel, task: Task, config: RunConfig, sources: Sequence[str] | str | None,
                targets: Sequence[str] | str, batch_size: int = 64) -> list[float | None] | float | None:
    """Total log-probability of each target given its source (EOS included); None where a
    seq2seq source is empty. A language model scores the targets alone (``sources`` is None).
    One ``str`` target (with one ``str`` source) is one text: its score alone comes back."""
    targets, single = as_texts(targets, "targets")
    if sources is not None:
        sources, one_source = as_texts(sources, "sources")
        if one_source != single:
            raise ConfigError("targets: must be one string with one source string, or a list with a list "
                              "of sources")
    check_batch_size(batch_size)
    results = _score_texts(model, task, config, sources, targets, batch_size)
    return results[0] if single else results


def _score_texts(model: SeqModel, task: Task, config: RunConfig, sources: list[str] | None,
                 targets: list[str], batch_size: int) -> list[float | None]:
    if model.kind not in TOKEN_KINDS:
        raise ConfigError(f"score: a {model.kind} has no sequence probabilities to score")
    if model.kind == "seq2seq" and (sources is None or len(sources) != len(targets)):
        raise ConfigError("score: a seq2seq model needs one source for each target")
    device = next(model.parameters()).device
    encoded = []
    for i, target in enumerate(targets):
        source = sources[i] if model.kind == "seq2seq" else None
        if model.kind == "seq2seq" and not source:
            encoded.append(None)
            continue
        example = task.encode(Example(source, target, f"<input {i + 1}>"))
        cut = example.source[: config.data.max_source_len] if example.source is not None else None
        encoded.append((cut, example.target))
    results: list[float | None] = [None] * len(targets)
    rows = [i for i, e in enumerate(encoded) if e is not None]
    for chunk in _batches(rows, lambda i: encoded[i][1].size(0), batch_size):
        width = max(encoded[i][1].size(0) for i in chunk)
        target = torch.full((len(chunk), width), PAD, dtype=torch.long)
        for row, i in enumerate(chunk):
            target[row, : encoded[i][1].size(0)] = encoded[i][1]
        source = mask = None
        if model.kind == "seq2seq":
            source, mask = pad_sources([encoded[i][0] for i in chunk])
            source, mask = source.to(device), mask.to(device)
        values = score(model, source, mask, target.to(device))
        for i, value in zip(chunk, values.tolist(), strict=True):
            results[i] = value
    return results


@dataclass
class AttentionMap:
    """Where each output token looked: ``weights`` (target tokens + EOS, source tokens)."""

    source_tokens: list[str]
    target_tokens: list[str]
    weights: Tensor


def attention_map(model: SeqModel, task: Task, config: RunConfig, text: str,
                  options: SearchConfig) -> tuple[Generation, AttentionMap]:
    """Generate for one source, then run the output back through the decoder with attention
    recording on: the decoder's attention over the source at every output position."""
    if not isinstance(text, str):
        raise ConfigError(f"text: attention takes one source string, got {type(text).__name__}")
    if model.kind != "seq2seq":
        raise ConfigError(f"attention: a {model.kind} has no attention over a source to draw")
    generation = search(model, task, config, text, options, batch_size=1)[0]
    source = prepare(task, config, [text]).sources[0]
    if source is None:
        raise ConfigError("attention: the input is empty; there is nothing to attend to")
    device = next(model.parameters()).device
    decoder = model.decoder
    with torch.inference_mode(), _recording(decoder):
        mask = torch.ones(1, source.size(0), dtype=torch.bool, device=device)
        enc = model.encode(source[None].to(device), mask)
        model.decode(torch.tensor([[BOS, *generation.tokens]], device=device), enc)
        weights = decoder.attention_weights
    if weights is None:
        raise ConfigError(f"attention: decoder {config.model.decoder.name!r} records no attention weights "
                          "(a recurrent decoder needs attention = \"dot\", \"general\" or \"additive\")")
    source_tokens = task.token_strings(source.tolist(), "source")
    target_tokens = [*task.token_strings(generation.tokens, "target"), task.token_strings([EOS], "target")[0]]
    return generation, AttentionMap(source_tokens, target_tokens, weights[0].float().cpu())


@contextlib.contextmanager
def _recording(decoder):
    before = decoder.record_attention
    decoder.record_attention = True
    try:
        yield
    finally:
        decoder.record_attention = before
        decoder.attention_weights = None


def pad_sources(sources: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Right-padded sources (B, S[, F]) and their mask (B, S)."""
    from torch.nn.utils.rnn import pad_sequence

    lengths = torch.tensor([s.size(0) for s in sources])
    padding = 0.0 if sources[0].is_floating_point() else PAD
    source = pad_sequence(sources, batch_first=True, padding_value=padding)
    return source, torch.arange(source.size(1)) < lengths[:, None]
