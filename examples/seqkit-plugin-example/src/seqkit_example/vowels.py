"""The ``vowels`` task: how many vowels has a word? A classifier (the classes are the counts
0 .. max_len) with a lower-is-better metric, ``error_rate``: a minimal complete seqkit task.

Every method below is part of the Task contract (see seqkit.Task): where examples come from
(files, or drawn from the task's own seed), what ``fit`` learns (the alphabet), the JSON state
saved with the model, the model shape, encoding and decoding, and metrics with their directions.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from seqkit import DataError, EncodedExample, Example, ModelShape, Task
from seqkit.interfaces import UNK

from .options import VowelsConfig

SPLITS = ("train", "valid", "test")
LETTERS = "abcdefghijklmnopqrstuvwxyz"
VOWELS = set("aeiou")
FIRST_ID = 4  # ids 0-3 are seqkit's special tokens: pad, bos, eos, unk


def count_vowels(word: str) -> int:
    return sum(letter in VOWELS for letter in word)


class VowelsTask(Task):
    model_kind = "classifier"  # encoder + pooling + class head; model_shape() says how many classes

    def __init__(self, config: VowelsConfig):
        self.config = config
        self.alphabet: list[str] | None = None  # learned by fit(), saved by state_dict()

    # -- data ----------------------------------------------------------------------------------

    def splits(self) -> list[str]:
        return [s for s in SPLITS if getattr(self.config, s) is not None or getattr(self.config, f"{s}_size")]

    def examples(self, split: str) -> Iterator[Example]:
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        path = getattr(self.config, split)  # `seqkit eval --data FILE` sets `test` to FILE
        return self._read(path) if path is not None else self._draw(split)

    def _read(self, path: Path) -> Iterator[Example]:
        """word<TAB>count lines; a malformed line is a DataError naming file:line."""
        with open(path, encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                word, tab, count = line.rstrip("\n").partition("\t")
                if not tab or not count.strip().isdigit():
                    raise DataError(f"{path}:{number}: expected word<TAB>count, got {line.strip()!r}")
                yield Example(word, int(count), f"{path}:{number}")

    def _draw(self, split: str) -> Iterator[Example]:
        """Words drawn from the task's own generator, seeded by ``seed`` and the split: never from
        the global random state, which the run's seed and the trainer move."""
        rng = random.Random(f"{self.config.seed}:{split}")
        for number in range(1, getattr(self.config, f"{split}_size") + 1):
            word = "".join(rng.choice(LETTERS) for _ in range(rng.randint(1, self.config.max_len)))
            yield Example(word, count_vowels(word), f"vowels.{split}:{number}")

    @classmethod
    def sample_options(cls, folder: Path) -> dict[str, Any]:
        """Small files for the conformance suite (which also reads `test` as `--data` does)."""
        words = ["banana", "sky", "queue", "tree", "a"]
        paths = {}
        for split in SPLITS:
            paths[split] = folder / f"{split}.tsv"
            paths[split].write_text("".join(f"{w}\t{count_vowels(w)}\n" for w in words), encoding="utf-8")
        return paths

    # -- what is learned from the data, and saved with the model -------------------------------

    def fit(self, train: Iterable[Example]) -> None:
        self.alphabet = sorted({letter for example in train for letter in example.source})

    def state_dict(self) -> dict[str, Any]:
        return {"alphabet": "".join(self._learned())}  # JSON: it is stored in every checkpoint

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.alphabet = list(state["alphabet"])

    def model_shape(self) -> ModelShape:
        # a classifier's class count goes in num_outputs (target_vocab is for token targets)
        return ModelShape("classifier", source_vocab=FIRST_ID + len(self._learned()),
                          num_outputs=self.config.max_len + 1)

    # -- tensors -------------------------------------------------------------------------------

    def encode(self, example: Example) -> EncodedExample:
        index = {letter: FIRST_ID + i for i, letter in enumerate(self._learned())}
        source = torch.tensor([index.get(letter, UNK) for letter in example.source], dtype=torch.long)
        target = None
        if example.target is not None:  # None when the model is asked to predict
            if not 0 <= int(example.target) <= self.config.max_len:
                raise DataError(f"{example.where or '<input>'}: count {example.target} is not in "
                                f"0 .. max_len = {self.config.max_len}")
            target = torch.tensor(int(example.target), dtype=torch.long)  # () class index
        return EncodedExample(source, target)

    def decode(self, output: torch.Tensor) -> int:
        return int(output)  # a class index () is the count itself

    def token_strings(self, ids: list[int], side: str) -> list[str]:
        alphabet = self._learned()
        return [alphabet[i - FIRST_ID] if FIRST_ID <= i < FIRST_ID + len(alphabet) else "<unk>" for i in ids]

    # -- metrics -------------------------------------------------------------------------------

    def metrics(self, predictions: list[int], references: list[int]) -> dict[str, float]:
        if not references:
            return {}
        wrong = sum(int(p) != int(r) for p, r in zip(predictions, references, strict=True))
        return {"error_rate": wrong / len(references)}

    def metric_directions(self) -> dict[str, str]:
        return {"error_rate": "lower"}  # train.best_metric = "error_rate" keeps the lowest

    def _learned(self) -> list[str]:
        if self.alphabet is None:
            raise RuntimeError("vowels: call fit() or load_state_dict() before encoding")
        return self.alphabet
