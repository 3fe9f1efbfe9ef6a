"""``translation``: text to text (seq2seq), from TSV, JSON Lines or a pair of parallel files."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from torch import Tensor

from seqkit.interfaces import BOS, EOS, PAD, EncodedBatch, EncodedExample, Example, Task
from seqkit.model import ModelShape
from seqkit.readers import read_jsonl, read_parallel, read_tsv
from seqkit.tokenizer import Tokenizer
from seqkit_tasks.common import (
    chain,
    configured_splits,
    framed,
    generation_metrics,
    output_ids,
    require,
    split_files,
    text_of,
    token_strings,
    token_tensor,
    train_tokenizer,
    write_samples,
)
from seqkit_tasks.config import TranslationConfig


class TranslationTask(Task):
    """Pairs of texts; the source and target tokenizers are trained on the train split."""

    model_kind = "seq2seq"

    def metric_directions(self) -> dict[str, str]:
        return {"exact_match": "higher", "bleu": "higher", "chrf": "higher"}

    @classmethod
    def sample_options(cls, folder: Path) -> dict[str, Any]:
        lines = ["hello world\thallo welt", "good morning\tguten morgen", "thank you\tdanke"]
        return {**write_samples(folder, ".tsv", lines), "tokenizer": "word"}

    def __init__(self, config: TranslationConfig):
        self.config = config
        self.source_tokenizer: Tokenizer | None = None
        self.target_tokenizer: Tokenizer | None = None

    def splits(self) -> list[str]:
        return configured_splits(self.config)

    def examples(self, split: str) -> Iterator[Example]:
        config = self.config
        if config.format == "tsv":
            return chain(read_tsv(path, escapes=config.escapes) for path in split_files(config, split))
        if config.format == "jsonl":
            keys = (config.source_key, config.target_key)
            return chain(read_jsonl(path, *keys, text_keys=keys) for path in split_files(config, split))
        langs = (f".{config.source_lang}", f".{config.target_lang}")
        return chain(read_parallel(prefix.with_name(prefix.name + langs[0]),
                                   prefix.with_name(prefix.name + langs[1]), escapes=config.escapes)
                     for prefix in split_files(config, split, langs))

    def fit(self, train: Iterable[Example]) -> None:
        sources, targets = [], []
        for example in train:
            sources.append(text_of(example.source, example.where, "source"))
            targets.append(text_of(example.target, example.where, "target"))
        if self.config.shared_vocab:
            self.source_tokenizer = self.target_tokenizer = train_tokenizer(self.config, sources + targets)
        else:
            self.source_tokenizer = train_tokenizer(self.config, sources)
            self.target_tokenizer = train_tokenizer(self.config, targets)

    def state_dict(self) -> dict[str, Any]:
        source = require(self.source_tokenizer, "translation")
        if self.config.shared_vocab:
            return {"tokenizer": source.to_json()}
        return {"source_tokenizer": source.to_json(), "target_tokenizer": self.target_tokenizer.to_json()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "tokenizer" in state:
            self.source_tokenizer = self.target_tokenizer = Tokenizer.from_json(state["tokenizer"])
        else:
            self.source_tokenizer = Tokenizer.from_json(state["source_tokenizer"])
            self.target_tokenizer = Tokenizer.from_json(state["target_tokenizer"])

    def model_shape(self) -> ModelShape:
        return ModelShape("seq2seq", source_vocab=require(self.source_tokenizer, "translation").vocab_size,
                          target_vocab=self.target_tokenizer.vocab_size, pad_id=PAD)

    def shape_bound(self) -> ModelShape:
        """The model shape before fitting: each vocabulary at its configured maximum."""
        size = self.config.vocab_size
        return ModelShape("seq2seq", source_vocab=size, target_vocab=size, pad_id=PAD)

    def encode(self, example: Example) -> EncodedExample:
        source = require(self.source_tokenizer, "translation").encode(
            text_of(example.source, example.where, "source"))
        if self.config.source_eos:
            source.append(EOS)
        target = None
        if example.target is not None:
            target = framed(self.target_tokenizer.encode(text_of(example.target, example.where, "target")))
        return EncodedExample(token_tensor(source), target)

    def encode_batch(self, examples: list[Example]) -> EncodedBatch:
        sources = [text_of(e.source, e.where, "source") for e in examples]
        targets = [text_of(e.target, e.where, "target") for e in examples]
        source = require(self.source_tokenizer, "translation").encode_batch(sources)
        if self.config.source_eos:
            source = source.framed(None, EOS)
        return EncodedBatch(source, self.target_tokenizer.encode_batch(targets).framed(BOS, EOS))

    def decode(self, output: Tensor) -> str:
        return require(self.target_tokenizer, "translation").decode(output_ids(output))

    def token_strings(self, ids: list[int], side: str) -> list[str]:
        return token_strings(self.source_tokenizer if side == "source" else self.target_tokenizer, ids)

    def metrics(self, predictions: list[str], references: list[str]) -> dict[str, float]:
        """exact_match, bleu, chrf; references are normalized as the target tokenizer sees text
        (lowercased with ``lowercase``, single spaces with the word tokenizer)."""
        normalize = require(self.target_tokenizer, "translation").normalize
        return generation_metrics(predictions, [normalize(r) for r in references])
