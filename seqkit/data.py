"""The data pipeline every task shares: encode a split, batch it under a token budget, collate.

    task.examples(split) --encode_split--> EncodedSplit --TokenBatchSampler--> index lists
                                                        --collate-----------> Batch

Batches are cut by length under ``[data] batch_tokens`` counted with padding, like fairseq's
``--max-tokens``, and their order is a pure function of (seed, epoch), so a resumed run sees the
same batches as an uninterrupted one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from seqkit.errors import ConfigError, DataError
from seqkit.interfaces import PAD, Batch, EncodedExample, Example, Task

if TYPE_CHECKING:
    from seqkit.config import DataConfig

logger = logging.getLogger(__name__)


# -- encoding -----------------------------------------------------------------------------------


@dataclass
class EncodedSplit:
    """The kept examples of one split, encoded, aligned by position (the ``indices`` of a Batch).

    sources/targets: one tensor per example (sources None for a language model)
    source_lengths:  tokens or feature vectors of each source (0 without a source)
    target_lengths:  tokens of each target sequence, bos and eos included (0 for a class or values)
    examples:        the raw examples, to score decoded predictions against (``target``) and to
                     show samples; a reference is the raw target, never its truncation
    stats:           examples read, kept, truncated, dropped (too long), empty (no source token)
    """

    split: str
    sources: list[Tensor | None] = field(default_factory=list)
    targets: list[Tensor] = field(default_factory=list)
    source_lengths: list[int] = field(default_factory=list)
    target_lengths: list[int] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("examples", "kept", "truncated", "dropped", "empty"), 0))

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> EncodedExample:
        return EncodedExample(self.sources[index], self.targets[index])

    @property
    def sizes(self) -> list[int]:
        """What an example costs in a padded batch: max(source length, target length)."""
        return [max(s, t) for s, t in zip(self.source_lengths, self.target_lengths, strict=True)]

    def batch(self, indices: Sequence[int]) -> Batch:
        """The examples at ``indices`` collated into a Batch."""
        return collate([self[i] for i in indices], indices)


def encode_split(task: Task, split: str, data: DataConfig) -> EncodedSplit:
    """Encode ``task.examples(split)`` and apply the ``[data]`` length limits.

    A source longer than ``max_source_len`` tokens (feature vectors), or a target sequence longer
    than ``max_target_len`` tokens counting bos and eos, is dropped or truncated (``too_long``);
    a truncated target keeps its bos and ends with eos. An example whose source has no token
    cannot be encoded by a model and is skipped (counted as ``empty``).
    """
    truncate = data.too_long == "truncate"
    encoded = EncodedSplit(split)
    stats = encoded.stats
    for example in task.examples(split):
        stats["examples"] += 1
        item = task.encode(example)
        source, target = item.source, item.target
        if source is not None and source.size(0) == 0:
            stats["empty"] += 1
            continue
        is_sequence = target.dim() == 1 and not target.is_floating_point()
        source_long = source is not None and source.size(0) > data.max_source_len
        target_long = is_sequence and target.size(0) > data.max_target_len
        if source_long or target_long:
            if not truncate:
                stats["dropped"] += 1
                continue
            if target_long and data.max_target_len < 2:
                raise ConfigError(f"data.max_target_len: must be at least 2 to hold bos and eos, "
                                  f"got {data.max_target_len}")
            stats["truncated"] += 1
            if source_long:
                source = source[:data.max_source_len]
            if target_long:
                target = torch.cat([target[:data.max_target_len - 1], target[-1:]])  # eos last
        encoded.sources.append(source)
        encoded.targets.append(target)
        encoded.source_lengths.append(0 if source is None else source.size(0))
        encoded.target_lengths.append(target.size(0) if is_sequence else 0)
        encoded.examples.append(example)
    stats["kept"] = len(encoded)
    if stats["examples"] == 0:
        raise DataError(f"{split}: the split has no examples")
    if stats["kept"] == 0:
        file = (getattr(example, "where", None) or "").rpartition(":")[0]  # of "file:line"
        origin = f"{file}: split {split}" if file and Path(file).is_file() else split
        raise DataError(f"{origin}: none of the {stats['examples']} examples is left "
                        f"({stats['dropped']} longer than data.max_source_len={data.max_source_len} or "
                        f"data.max_target_len={data.max_target_len}, {stats['empty']} with an empty source)")
    logger.info("%s: %d examples, %d kept, %d truncated, %d dropped as too long, %d empty", split,
                stats["examples"], stats["kept"], stats["truncated"], stats["dropped"], stats["empty"])
    return encoded


# -- batching -----------------------------------------------------------------------------------


class TokenBatchSampler:
    """Lists of example indices whose padded size, max(size) * count, stays within ``batch_tokens``.

    Each epoch: sort the examples by size with a random tie-break, cut the sorted list greedily into
    batches, shuffle the batch order; the randomness comes only from (seed, epoch), so the same seed
    gives the same batches, bit for bit. An example larger than the budget gets a batch of its own.

    ``iter(sampler)`` runs over epochs forever (training) from the position in ``state_dict()``:
    ``{"epoch": e, "index": i}`` means i batches of epoch e have been handed out.
    ``ordered_batches()`` is one pass for evaluation, sorted by size, in a fixed order.
    """

    def __init__(self, sizes: Sequence[int], batch_tokens: int, seed: int = 0):
        if len(sizes) == 0:
            raise ValueError("no examples to batch")
        if batch_tokens < 1:
            raise ValueError(f"batch_tokens must be at least 1, got {batch_tokens}")
        self.sizes = np.maximum(np.asarray(sizes, dtype=np.int64), 1)
        self.batch_tokens = batch_tokens
        self.seed = seed
        self.epoch = 0
        self.index = 0
        self._cached: tuple[int, list[list[int]]] | None = None
        self._per_epoch: int | None = None

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """The batches of ``epoch``, in the order training sees them."""
        if self._cached is not None and self._cached[0] == epoch:
            return self._cached[1]
        rng = np.random.default_rng([self.seed % 2**64, epoch])
        tie_break = rng.permutation(len(self.sizes))
        batches = self._cut(np.lexsort((tie_break, self.sizes)))  # by size, then the random key
        batches = [batches[i] for i in rng.permutation(len(batches))]
        self._cached = (epoch, batches)
        return batches

    def ordered_batches(self) -> list[list[int]]:
        """Every example once, shortest first, for evaluation."""
        return self._cut(np.argsort(self.sizes, kind="stable"))

    def __len__(self) -> int:
        """Batches per epoch (the same every epoch: ties have equal sizes)."""
        if self._per_epoch is None:
            self._per_epoch = len(self.ordered_batches())
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

    def _cut(self, order: np.ndarray) -> list[list[int]]:
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0
        for i in order.tolist():
            size = int(self.sizes[i])
            if current and max(longest, size) * (len(current) + 1) > self.batch_tokens:
                batches.append(current)
                current, longest = [], 0
            current.append(i)
            longest = max(longest, size)
        batches.append(current)
        return batches


def step_batches(batches: Iterator[list[int]], accumulate: int, rank: int = 0,
                 world_size: int = 1) -> list[list[int]]:
    """This process's batches for one optimizer step. A step takes ``accumulate * world_size``
    consecutive batches of the one global order, and rank r gets batches r, r + W, r + 2W, ... of
    them. Every rank draws the same global order, so the sampler's (epoch, index) counts global
    batches and a run resumes on any number of processes with the same data order."""
    drawn = [next(batches) for _ in range(accumulate * world_size)]
    return drawn[rank::world_size]


# -- collating ----------------------------------------------------------------------------------


def collate(examples: Sequence[EncodedExample], indices: Sequence[int]) -> Batch:
    """Stack examples into a Batch, right-padded: token ids with PAD, feature vectors with zeros.
    Targets: sequences (T,) -> (B, T) padded with PAD; class indices () -> (B,); values (K,) ->
    (B, K)."""
    if not examples:
        raise ValueError("cannot collate an empty batch")
    source = source_mask = None
    if examples[0].source is not None:
        sources = [e.source for e in examples]
        padding = PAD if not sources[0].is_floating_point() else 0.0
        source = pad_sequence(sources, batch_first=True, padding_value=padding)  # (B, S) or (B, S, F)
        lengths = torch.tensor([s.size(0) for s in sources])
        source_mask = torch.arange(source.size(1)) < lengths[:, None]  # (B, S)
    targets = [e.target for e in examples]
    if targets[0].dim() == 1 and not targets[0].is_floating_point():
        target = pad_sequence(targets, batch_first=True, padding_value=PAD)  # (B, T)
    else:
        target = torch.stack(targets)  # (B,) classes or (B, K) values
    return Batch(source, source_mask, target, torch.as_tensor(list(indices), dtype=torch.long))
