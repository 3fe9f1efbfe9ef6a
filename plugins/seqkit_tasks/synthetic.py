"""``copy``, ``reverse``, ``sort``: synthetic seq2seq tasks over symbol sequences, no files.

A source is a sequence of symbols written as space-separated numbers ("3 7 1"); the target is its
copy ("3 7 1"), its reversal ("1 7 3") or its sorted form ("1 3 7"). Each split is drawn from its
own random stream of ``seed``, so the data is the same on every run; test sequences are kept out
of valid, and both out of train, for every length whose space of sequences is large enough
(the held-out sequences are at most half of it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

import numpy as np
from torch import Tensor

from seqkit.errors import DataError
from seqkit.interfaces import PAD, EncodedExample, Example, Task
from seqkit.model import ModelShape
from seqkit.preflight import check_memory
from seqkit.tokenizer import Tokenizer
from seqkit_tasks.common import (
    SPLITS,
    check_split,
    exact_match,
    framed,
    output_ids,
    text_of,
    token_strings,
    token_tensor,
)
from seqkit_tasks.config import SyntheticConfig

_ATTEMPTS = 100  # draws before a held-out sequence is accepted anyway (odds: 2**-100)
# Memory of one example once encoded (measured: ~1.9 kB at mean length 5.5 with two tensors, two
# strings and the Example), and of one vocabulary entry.
_EXAMPLE_BYTES, _TOKEN_BYTES, _VOCABULARY_ENTRY_BYTES = 1500, 64, 200


class SyntheticTask(Task):
    """The shared machinery; a subclass names the task and defines ``transform``."""

    model_kind = "seq2seq"

    def metric_directions(self) -> dict[str, str]:
        return {"exact_match": "higher"}
    name: ClassVar[str]

    def __init__(self, config: SyntheticConfig):
        self.config = config
        # sizes are checked against memory before a vocabulary or a sequence is made: a
        # train_size of 10**12 is refused here, not after hours of drawing sequences
        check_memory("symbols", config.symbols * _VOCABULARY_ENTRY_BYTES, "vocabulary")
        # the key blamed is the factor further above its default: a huge max_len is not train_size's fault
        long = config.max_len / SyntheticConfig.max_len > config.train_size / SyntheticConfig.train_size
        for split in SPLITS:
            check_memory("max_len" if long else f"{split}_size", self._split_bytes(split),
                         f"{split} examples ({getattr(config, f'{split}_size'):,} of up to "
                         f"{config.max_len:,} tokens)")
        check_memory("max_len" if long else "train_size", self.memory_estimate(), "examples")
        self.tokenizer = self._vocabulary()
        self._held_out: dict[str, set[tuple[int, ...]]] = {}

    @staticmethod
    def transform(sequence: list[int]) -> list[int]:
        raise NotImplementedError

    def splits(self) -> list[str]:
        return [split for split in SPLITS if getattr(self.config, f"{split}_size") > 0]

    def examples(self, split: str) -> Iterator[Example]:
        check_split(split)
        if getattr(self.config, f"{split}_size") == 0:
            raise DataError(f"task.{split}_size: 0, no {split} split")
        return (Example(_text(sequence), _text(self.transform(sequence)), f"{self.name}.{split}:{i}")
                for i, sequence in enumerate(self._sequences(split), start=1))

    def fit(self, train: Iterable[Example]) -> None:
        """The vocabulary is fixed by ``symbols``: nothing to learn, ``train`` is not read."""
        self.tokenizer = self._vocabulary()

    def state_dict(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer.to_json()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        tokenizer = Tokenizer.from_json(state["tokenizer"])
        if tokenizer.vocab_size != self.tokenizer.vocab_size:
            raise DataError(f"{self.name}: the saved vocabulary has {tokenizer.vocab_size} tokens, "
                            f"symbols = {self.config.symbols} needs {self.tokenizer.vocab_size}")
        self.tokenizer = tokenizer

    def model_shape(self) -> ModelShape:
        size = self.tokenizer.vocab_size
        return ModelShape("seq2seq", source_vocab=size, target_vocab=size, pad_id=PAD)

    def memory_estimate(self) -> int:
        """Bytes the encoded splits take in memory (with the sequences held out of train)."""
        return sum(self._split_bytes(split) for split in SPLITS)

    def _split_bytes(self, split: str) -> int:
        return getattr(self.config, f"{split}_size") * (_EXAMPLE_BYTES + _TOKEN_BYTES * self.config.max_len)

    def encode(self, example: Example) -> EncodedExample:
        source = self.tokenizer.encode(text_of(example.source, example.where, "source"))
        target = None
        if example.target is not None:
            target = framed(self.tokenizer.encode(text_of(example.target, example.where, "target")))
        return EncodedExample(token_tensor(source), target)

    def token_strings(self, ids: list[int], side: str) -> list[str]:
        return token_strings(self.tokenizer, ids)

    def decode(self, output: Tensor) -> str:
        return self.tokenizer.decode(output_ids(output))

    def metrics(self, predictions: list[str], references: list[str]) -> dict[str, float]:
        return {"exact_match": exact_match(predictions, references)} if references else {}

    # -- generation ----------------------------------------------------------------------------

    def _vocabulary(self) -> Tokenizer:
        return Tokenizer.from_tokens("word", [str(s) for s in range(self.config.symbols)])

    def _sequences(self, split: str) -> Iterator[list[int]]:
        config = self.config
        excluded = self._excluded(split)
        rng = np.random.default_rng([config.seed % 2**64, SPLITS.index(split)])
        for _ in range(getattr(config, f"{split}_size")):
            length = int(rng.integers(config.min_len, config.max_len + 1))
            for _ in range(_ATTEMPTS):  # at least half of the sequences of this length are allowed
                sequence = rng.integers(0, config.symbols, size=length).tolist()
                if tuple(sequence) not in excluded:
                    break
            yield sequence

    def _excluded(self, split: str) -> set[tuple[int, ...]]:
        """The sequences of the later splits (test for valid, valid and test for train), except
        those of a length where they hold more than half of the possible sequences (with 10
        symbols, every length-1 sequence is likely in valid: train keeps them)."""
        excluded: set[tuple[int, ...]] = set()
        for other in SPLITS[SPLITS.index(split) + 1:]:
            if other not in self._held_out:
                self._held_out[other] = {tuple(s) for s in self._sequences(other)}
            excluded |= self._held_out[other]
        by_length = Counter(len(s) for s in excluded)
        crowded = {n for n, count in by_length.items() if count > self.config.symbols ** n / 2}
        return {s for s in excluded if len(s) not in crowded}


class CopyTask(SyntheticTask):
    name = "copy"

    @staticmethod
    def transform(sequence: list[int]) -> list[int]:
        return list(sequence)


class ReverseTask(SyntheticTask):
    name = "reverse"

    @staticmethod
    def transform(sequence: list[int]) -> list[int]:
        return sequence[::-1]


class SortTask(SyntheticTask):
    name = "sort"

    @staticmethod
    def transform(sequence: list[int]) -> list[int]:
        return sorted(sequence)


def _text(sequence: list[int]) -> str:
    return " ".join(map(str, sequence))
