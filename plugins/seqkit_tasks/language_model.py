"""``language_model``: learn to continue text, one sequence per line or per JSON object."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from torch import Tensor

from seqkit.interfaces import BOS, EOS, PAD, EncodedBatch, EncodedExample, Example, Task
from seqkit.model import ModelShape
from seqkit.readers import read_jsonl, read_lines
from seqkit.tokenizer import Tokenizer
from seqkit_tasks.common import (
    chain,
    configured_splits,
    framed,
    output_ids,
    require,
    split_files,
    text_of,
    token_strings,
    train_tokenizer,
    write_samples,
)
from seqkit_tasks.config import LanguageModelConfig


class LanguageModelTask(Task):
    """Each example is a target sequence [bos, ..., eos] with no source; metrics are the core's
    loss and perplexity."""

    model_kind = "language_model"

    def metric_directions(self) -> dict[str, str]:
        return {}  # metrics() adds nothing to the core's loss, ppl and token_accuracy

    @classmethod
    def sample_options(cls, folder: Path) -> dict[str, Any]:
        lines = ["the cat sat on the mat", "a dog ran", "the end"]
        return {**write_samples(folder, ".txt", lines), "tokenizer": "char"}

    def __init__(self, config: LanguageModelConfig):
        self.config = config
        self.tokenizer: Tokenizer | None = None

    def splits(self) -> list[str]:
        return configured_splits(self.config)

    def examples(self, split: str) -> Iterator[Example]:
        config, files = self.config, split_files(self.config, split)
        if config.format == "jsonl":
            key = config.text_key
            return chain(read_jsonl(path, None, key, text_keys=(key,)) for path in files)
        return chain(read_lines(path, escapes=config.escapes) for path in files)

    def fit(self, train: Iterable[Example]) -> None:
        self.tokenizer = train_tokenizer(self.config, (text_of(e.target, e.where, "text") for e in train))

    def state_dict(self) -> dict[str, Any]:
        return {"tokenizer": require(self.tokenizer, "language_model").to_json()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tokenizer = Tokenizer.from_json(state["tokenizer"])

    def model_shape(self) -> ModelShape:
        return ModelShape("language_model", target_vocab=require(self.tokenizer, "language_model").vocab_size,
                          pad_id=PAD)

    def shape_bound(self) -> ModelShape:
        """The model shape before fitting: the vocabulary at its configured maximum."""
        return ModelShape("language_model", target_vocab=self.config.vocab_size, pad_id=PAD)

    def encode(self, example: Example) -> EncodedExample:
        """A text becomes the target [bos, ..., eos]; the source is always None. (A prompt for
        generation is a target prefix: ``tokenizer.encode(prompt)`` after BOS.)"""
        tokenizer = require(self.tokenizer, "language_model")
        target = None
        if example.target is not None:
            target = framed(tokenizer.encode(text_of(example.target, example.where, "text")))
        return EncodedExample(None, target)

    def encode_batch(self, examples: list[Example]) -> EncodedBatch:
        texts = [text_of(e.target, e.where, "text") for e in examples]
        target = require(self.tokenizer, "language_model").encode_batch(texts)
        return EncodedBatch(None, target.framed(BOS, EOS))

    def decode(self, output: Tensor) -> str:
        return require(self.tokenizer, "language_model").decode(output_ids(output))

    def token_strings(self, ids: list[int], side: str) -> list[str]:
        return token_strings(self.tokenizer, ids)

    def metrics(self, predictions: list[str], references: list[str]) -> dict[str, float]:
        return {}
