"""``classification``: one label per text, from TSV (text<TAB>label) or JSON Lines."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from seqkit.errors import DataError
from seqkit.interfaces import PAD, EncodedExample, Example, Task
from seqkit.model import ModelShape
from seqkit.readers import read_jsonl, read_tsv
from seqkit.tokenizer import Tokenizer
from seqkit_tasks.common import (
    chain,
    configured_splits,
    require,
    split_files,
    text_of,
    token_strings,
    token_tensor,
    train_tokenizer,
    write_samples,
)
from seqkit_tasks.config import ClassificationConfig


class ClassificationTask(Task):
    """Labels are strings (numbers in JSON Lines are read as their text), indexed in sorted order."""

    model_kind = "classifier"

    def metric_directions(self) -> dict[str, str]:
        return {"accuracy": "higher"}

    @classmethod
    def sample_options(cls, folder: Path) -> dict[str, Any]:
        lines = ["a good film\tpos", "a bad film\tneg", "good acting\tpos", "bad plot\tneg"]
        return write_samples(folder, ".tsv", lines)

    def __init__(self, config: ClassificationConfig):
        self.config = config
        self.tokenizer: Tokenizer | None = None
        self.labels: list[str] = []
        self._index: dict[str, int] = {}

    def splits(self) -> list[str]:
        return configured_splits(self.config)

    def examples(self, split: str) -> Iterator[Example]:
        config, files = self.config, split_files(self.config, split)
        if config.format == "jsonl":
            keys = (config.text_key, config.label_key)
            return chain(read_jsonl(path, *keys, text_keys=(config.text_key,)) for path in files)
        return chain(read_tsv(path, escapes=config.escapes) for path in files)

    def fit(self, train: Iterable[Example]) -> None:
        texts, labels = [], set()
        for example in train:
            texts.append(text_of(example.source, example.where, "text"))
            labels.add(_label(example))
        if len(labels) < 2:
            raise DataError(f"{self.config.train}: task.train: a classifier needs at least 2 labels, "
                            f"found {sorted(labels)}")
        self.tokenizer = train_tokenizer(self.config, texts)
        self._set_labels(sorted(labels))

    def state_dict(self) -> dict[str, Any]:
        return {"tokenizer": require(self.tokenizer, "classification").to_json(), "labels": list(self.labels)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tokenizer = Tokenizer.from_json(state["tokenizer"])
        self._set_labels([str(label) for label in state["labels"]])

    def model_shape(self) -> ModelShape:
        return ModelShape("classifier", source_vocab=require(self.tokenizer, "classification").vocab_size,
                          num_outputs=len(self.labels), pad_id=PAD)

    def shape_bound(self) -> ModelShape:
        """The model shape before fitting: the vocabulary at its configured maximum, two labels
        (the fewest a classifier has; the head's size barely matters)."""
        return ModelShape("classifier", source_vocab=self.config.vocab_size, num_outputs=2, pad_id=PAD)

    def encode(self, example: Example) -> EncodedExample:
        tokenizer = require(self.tokenizer, "classification")
        source = token_tensor(tokenizer.encode(text_of(example.source, example.where, "text")))
        target = None
        if example.target is not None:
            label = _label(example)
            if label not in self._index:
                raise DataError(f"{example.where or '<input>'}: unknown label {label!r}; the training "
                                f"labels are {', '.join(map(repr, self.labels))}")
            target = torch.tensor(self._index[label], dtype=torch.long)
        return EncodedExample(source, target)

    def token_strings(self, ids: list[int], side: str) -> list[str]:
        return token_strings(self.tokenizer, ids)

    def decode(self, output: Tensor | int) -> str:
        """A class index (a () tensor or an int) -> its label."""
        return self.labels[int(output)]

    def metrics(self, predictions: list[str], references: list[Any]) -> dict[str, float]:
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
        if not references:
            return {}
        correct = sum(str(p) == _text_label(r) for p, r in zip(predictions, references, strict=True))
        return {"accuracy": correct / len(references)}

    def _set_labels(self, labels: list[str]) -> None:
        self.labels = labels
        self._index = {label: i for i, label in enumerate(labels)}


def _label(example: Example) -> str:
    if isinstance(example.target, (dict, list)) or example.target is None:
        raise DataError(f"{example.where or '<input>'}: a label must be a string or a number, "
                        f"got {example.target!r}")
    return _text_label(example.target)


def _text_label(value: Any) -> str:
    """JSON numbers as labels: 1 and 1.0 both mean "1"; TSV labels are stripped of spaces."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()
