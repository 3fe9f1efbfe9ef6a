"""Token-id sequences of many examples in two numpy arrays, and the few operations the data
pipeline needs on them, each one vectorised (no Python loop per example): what a task's
``encode_batch`` returns and what prepared data are written from.

    TokenArrays(ids=[5, 6, 7, 8, 9], lengths=[2, 0, 3])  ->  [5, 6], [], [7, 8, 9]
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class TokenArrays:
    """Sequences of token ids, concatenated: sequence i is ``ids[starts[i]:starts[i] + lengths[i]]``."""

    ids: np.ndarray  # (total,) int64
    lengths: np.ndarray  # (n,) int64

    @classmethod
    def from_lists(cls, sequences: Sequence[Sequence[int]]) -> TokenArrays:
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        ids = np.fromiter(itertools.chain.from_iterable(sequences), dtype=np.int64, count=int(lengths.sum()))
        return cls(ids, lengths)

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def starts(self) -> np.ndarray:
        return np.cumsum(self.lengths) - self.lengths

    def rows(self) -> Iterable[np.ndarray]:
        """Each sequence (a view)."""
        return np.split(self.ids, np.cumsum(self.lengths)[:-1]) if len(self) else []

    def framed(self, bos: int | None, eos: int) -> TokenArrays:
        """Each sequence as [bos, ...ids, eos] ([...ids, eos] when ``bos`` is None)."""
        lengths = self.lengths + (1 if bos is None else 2)
        ids = np.empty(int(lengths.sum()), dtype=np.int64)
        ends = np.cumsum(lengths)
        inside = np.ones(len(ids), dtype=bool)
        if bos is not None:
            ids[ends - lengths] = bos
            inside[ends - lengths] = False
        ids[ends - 1] = eos
        inside[ends - 1] = False
        ids[inside] = self.ids
        return TokenArrays(ids, lengths)

    def take(self, keep: np.ndarray) -> TokenArrays:
        """The sequences where ``keep`` (a boolean mask) is true, in order."""
        return TokenArrays(self.ids[np.repeat(keep, self.lengths)], self.lengths[keep])

    def cut(self, limit: int, keep_last: bool = False) -> TokenArrays:
        """Each sequence cut to at most ``limit`` ids; with ``keep_last`` a cut one ends with its
        own last id (a target keeps its eos: the first limit - 1 ids, then the last)."""
        lengths = np.minimum(self.lengths, limit)
        old_starts, new_ends = self.starts, np.cumsum(lengths)
        index = np.repeat(old_starts, lengths) + within(lengths)  # the first `limit` ids of each row
        if keep_last:
            cut = (self.lengths > limit) & (lengths > 0)
            index[new_ends[cut] - 1] = old_starts[cut] + self.lengths[cut] - 1
        return TokenArrays(self.ids[index], lengths)


def within(lengths: np.ndarray) -> np.ndarray:
    """For rows of ``lengths`` laid end to end, each position's place in its row:
    [2, 0, 3] -> [0, 1, 0, 1, 2]."""
    ends = np.cumsum(lengths)
    return np.arange(int(ends[-1]) if len(ends) else 0) - np.repeat(ends - lengths, lengths)
