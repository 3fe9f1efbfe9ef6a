"""Batches under a token budget, cut from example sizes with numpy: no Python object per example.

Each epoch: sort the examples by size with a random tie-break, cut the sorted list greedily into
batches whose padded size, max(size) * count, stays within ``batch_tokens``, shuffle the batch order.
The randomness comes only from (seed, epoch), so the same seed gives the same batches, bit for bit,
and a resumed run sees the same batches as an uninterrupted one. An example larger than the budget
gets a batch of its own.

Sorted ascending, a batch's largest example is its last, so the greedy cut needs no per-example
loop: it runs over the distinct sizes (a few hundred), taking as many examples of each size as fit.
The order (one int64 per example) and the batch starts are the only per-epoch state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np


def cut_sorted(sizes: np.ndarray, batch_tokens: int) -> np.ndarray:
    """Start positions of the greedy batches of ``sizes`` (ascending, each at least 1): a batch
    takes the next example while (its count + 1) * that example's size <= ``batch_tokens``."""
    if len(sizes) == 0:
        return np.zeros(0, dtype=np.int64)
    run_starts = np.concatenate(([0], np.flatnonzero(sizes[1:] != sizes[:-1]) + 1))  # sorted: runs
    values, run_lengths = sizes[run_starts], np.diff(np.append(run_starts, len(sizes)))
    pieces = [np.zeros(1, dtype=np.int64)]
    position, count = 0, 0  # examples placed; examples in the open batch
    for size, run in zip(values.tolist(), run_lengths.tolist(), strict=True):
        fits = batch_tokens // size  # examples of this size a batch may hold
        capacity = max(fits, 1)  # an example larger than the budget still gets a batch
        joining = min(run, capacity if count == 0 else max(fits - count, 0))
        position, count, run = position + joining, count + joining, run - joining
        if run:  # the open batch is full: the rest of the run starts new batches
            pieces.append(np.arange(position, position + run, capacity, dtype=np.int64))
            position += run
            count = run % capacity or capacity
    return np.concatenate(pieces)


class Batches(Sequence):
    """Batches as slices of one ``order`` array: batch j is ``order[starts[k]:starts[k + 1]]``
    with k = ``shuffle[j]``; each is made a list of indices only when asked for."""

    def __init__(self, order: np.ndarray, starts: np.ndarray, shuffle: np.ndarray | None = None):
        self.order, self.starts, self.shuffle = order, starts, shuffle
        self.ends = np.append(starts[1:], len(order))

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, j: Any) -> Any:
        if isinstance(j, slice):
            return [self[i] for i in range(*j.indices(len(self)))]
        if not -len(self) <= j < len(self):
            raise IndexError(f"batch {j} of {len(self)}")
        k = int(self.shuffle[j]) if self.shuffle is not None else j % len(self)
        return self.order[self.starts[k]:self.ends[k]].tolist()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and len(self) == len(other) and all(
            a == b for a, b in zip(self, other, strict=True))


def _by_size(sizes: np.ndarray, draw_tie_break: Callable[[int], np.ndarray]) -> np.ndarray:
    """Indices sorted by size, then by a tie-break permutation ``draw_tie_break(n)``:
    ``np.lexsort((tie_break, sizes))``, computed as one argsort of size * n + tie_break when that
    fits in int64 (4x faster: the keys are unique, so any sort gives the same order), built in
    place, the permutation freed before the sort (two int64 per example at the peak)."""
    n = len(sizes)
    tie_break = draw_tie_break(n)
    if int(sizes.max()) < (2**62) // max(n, 1):
        keys = sizes.astype(np.int64)
        keys *= n
        keys += tie_break
        del tie_break
        return np.argsort(keys)
    return np.lexsort((tie_break, sizes))


class TokenBatchSampler:
    """Lists of example indices whose padded size, max(size) * count, stays within ``batch_tokens``.

    ``iter(sampler)`` runs over epochs forever (training) from the position in ``state_dict()``:
    ``{"epoch": e, "index": i}`` means i batches of epoch e have been handed out.
    ``ordered_batches()`` is one pass for evaluation, sorted by size, in a fixed order.
    """

    def __init__(self, sizes: Sequence[int] | np.ndarray, batch_tokens: int, seed: int = 0):
        if len(sizes) == 0:
            raise ValueError("no examples to batch")
        if batch_tokens < 1:
            raise ValueError(f"batch_tokens must be at least 1, got {batch_tokens}")
        sizes = np.asarray(sizes)
        compact = np.int32 if len(sizes) and int(sizes.max()) < 2**31 else np.int64  # 4 bytes an example
        self.sizes = np.maximum(sizes, 1).astype(compact, copy=False)
        self.batch_tokens = batch_tokens
        self.seed = seed
        self.epoch = 0
        self.index = 0
        self._cached: tuple[int, Batches] | None = None
        self._per_epoch: int | None = None

    def epoch_batches(self, epoch: int) -> Batches:
        """The batches of ``epoch``, in the order training sees them."""
        if self._cached is not None and self._cached[0] == epoch:
            return self._cached[1]
        rng = np.random.default_rng([self.seed % 2**64, epoch])
        order = _by_size(self.sizes, rng.permutation)
        starts = cut_sorted(self.sizes[order], self.batch_tokens)
        batches = Batches(order, starts, rng.permutation(len(starts)))
        self._cached = (epoch, batches)
        return batches

    def ordered_batches(self) -> Batches:
        """Every example once, shortest first, for evaluation."""
        order = np.argsort(self.sizes, kind="stable")
        return Batches(order, cut_sorted(self.sizes[order], self.batch_tokens))

    def __len__(self) -> int:
        """Batches per epoch (the same every epoch: ties have equal sizes)."""
        if self._per_epoch is None:
            self._per_epoch = len(cut_sorted(np.sort(self.sizes), self.batch_tokens))
        return self._per_epoch

    def __iter__(self) -> Iterator[list[int]]:
        while True:
            batches = self.epoch_batches(self.epoch)
            while self.index < len(batches):
                self.index += 1  # before yielding: state_dict() then counts this batch as handed out
                yield batches[self.index - 1]
            self.epoch, self.index = self.epoch + 1, 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        epoch, index = int(state["epoch"]), int(state["index"])
        if epoch < 0 or not 0 <= index <= len(self.epoch_batches(epoch)):
            raise ValueError(f"batch sampler state {state} does not fit this data "
                             f"({len(self)} batches per epoch)")
        self.epoch, self.index = epoch, index
