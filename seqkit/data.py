"""The data pipeline every task shares: encode a split, batch it under a token budget, collate.

    task.examples(split) --encode_split--> EncodedSplit --TokenBatchSampler--> index lists
                                                        --collate-----------> Batch

Batches are cut by length under ``[data] batch_tokens`` counted with padding, like fairseq's
``--max-tokens``, and their order is a pure function of (seed, epoch), so a resumed run sees the
same batches as an uninterrupted one.

Training may drop what does not fit the length limits; an evaluation split never does: a score is
the score of every example of its file (see ``encode_split``).
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
from seqkit.interfaces import BOS, EOS, PAD, UNK, Batch, EncodedExample, Example, Task

if TYPE_CHECKING:
    from seqkit.config import DataConfig

logger = logging.getLogger(__name__)


# -- encoding -----------------------------------------------------------------------------------


COUNTS = ("examples", "kept", "truncated", "dropped", "empty",
          "source_tokens", "source_unk", "target_tokens", "target_unk")
"""What ``EncodedSplit.stats`` counts: examples read, kept, truncated, dropped (too long), empty (no
source token); then token ids per side, and those that are UNK (at full length, bos and eos not
counted; float features count nothing). Counts, not rates, so that parts of a split add up."""

TRAIN_UNK_WARNING = 0.001
"""The <unk> rate of the train split above which encoding warns. The tokenizers are fit on train, so
its unknown tokens are what the vocabulary's size cut off, expected in small amounts; in an
evaluation split every unknown token is warned about (a target token the model cannot produce, a
source token it cannot read)."""


@dataclass
class EncodedSplit:
    """The examples of one split, encoded, aligned by position (the ``indices`` of a Batch).

    An evaluation split holds every example of its file: a too-long one truncated for the model,
    one with no source token kept (listed in ``empty``) to be scored as an empty prediction. The
    train split holds the examples training can use: too-long ones dropped or truncated as
    ``data.too_long`` says, empty ones skipped.

    sources/targets: one tensor per example (sources None for a language model)
    source_lengths:  tokens or feature vectors of each source (0 without a source)
    target_lengths:  tokens of each target sequence, bos and eos included (0 for a class or values)
    examples:        the raw examples, to score decoded predictions against (``target``) and to
                     show samples; a reference is the raw target, never its truncation
    empty:           positions of the examples whose source has no token: never given to the model
    stats:           the counts named in ``COUNTS``
    """

    split: str
    sources: list[Tensor | None] = field(default_factory=list)
    targets: list[Tensor] = field(default_factory=list)
    source_lengths: list[int] = field(default_factory=list)
    target_lengths: list[int] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    empty: list[int] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))

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

    def model_batches(self, batch_tokens: int) -> list[list[int]]:
        """Every example the model can take (all but ``empty``) once, shortest first, as lists of
        positions within ``batch_tokens``: the batches of an evaluation."""
        if not self.empty:
            return TokenBatchSampler(self.sizes, batch_tokens).ordered_batches()
        skipped = set(self.empty)
        positions = [i for i in range(len(self)) if i not in skipped]
        if not positions:
            return []
        sizes = self.sizes
        ordered = TokenBatchSampler([sizes[i] for i in positions], batch_tokens).ordered_batches()
        return [[positions[i] for i in batch] for batch in ordered]

    def unk_rates(self) -> dict[str, float]:
        """The fraction of each side's tokens that are UNK: what the tokenizers could not represent
        ({} sides without token ids: float features, class or value targets)."""
        stats = self.stats
        return {side: stats[f"{side}_unk"] / stats[f"{side}_tokens"] for side in ("source", "target")
                if stats[f"{side}_tokens"]}


def encode_split(task: Task, split: str, data: DataConfig, *, evaluation: bool | None = None,
                 warn: bool = True) -> EncodedSplit:
    """Encode ``task.examples(split)`` under the ``[data]`` length limits.

    ``evaluation`` (default: every split but train) keeps every example, as a score of the split
    must cover all of it: a source longer than ``max_source_len`` tokens (feature vectors) is cut,
    a target sequence longer than ``max_target_len`` tokens (bos and eos included) is cut keeping
    bos and ending with eos, for the model only (references stay whole); an example with no source
    token is kept for scoring as an empty prediction (``EncodedSplit.empty``), or, for a model that
    predicts a class or values, is a DataError naming it. Otherwise (train) too-long examples are
    dropped or truncated as ``too_long`` says and empty ones skipped.

    What was dropped, truncated or skipped, and an <unk> rate worth knowing, is logged as a warning
    (``warn``: False in all but one process of a distributed run); all counts at info.
    """
    if evaluation is None:
        evaluation = split != "train"
    truncate = evaluation or data.too_long == "truncate"
    encoded = EncodedSplit(split)
    stats = encoded.stats
    long_sides: set[str] = set()  # which limits the dropped or truncated examples broke
    for example in task.examples(split):
        stats["examples"] += 1
        item = task.encode(example)
        source, target = item.source, item.target
        is_sequence = target.dim() == 1 and not target.is_floating_point()
        _count_tokens(stats, source, target if is_sequence else None)
        if source is not None and source.size(0) == 0:
            stats["empty"] += 1
            if not evaluation:
                continue
            if not is_sequence:
                kind = getattr(task, "model_kind", "model")
                raise DataError(f"{example.where or split}: no source token (empty after tokenization); "
                                f"a {kind} cannot predict without one, and every example of split "
                                f"{split} is scored: fix or remove it")
            encoded.empty.append(len(encoded))
            _append(encoded, example, source, target, is_sequence)
            continue
        source_long = source is not None and source.size(0) > data.max_source_len
        target_long = is_sequence and target.size(0) > data.max_target_len
        if source_long or target_long:
            long_sides.update(side for side, long in (("source", source_long), ("target", target_long))
                              if long)
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
        _append(encoded, example, source, target, is_sequence)
    stats["kept"] = len(encoded)
    if stats["examples"] == 0:
        raise DataError(f"{split}: the split has no examples")
    if len(encoded) == len(encoded.empty):  # nothing a model can take
        file = (getattr(example, "where", None) or "").rpartition(":")[0]  # of "file:line"
        origin = f"{file}: split {split}" if file and Path(file).is_file() else split
        raise DataError(f"{origin}: none of the {stats['examples']} examples is left "
                        f"({stats['dropped']} longer than data.max_source_len={data.max_source_len} or "
                        f"data.max_target_len={data.max_target_len}, {stats['empty']} with an empty source)")
    _report(encoded, data, evaluation, long_sides, warn)
    return encoded


def _append(encoded: EncodedSplit, example: Example, source: Tensor | None, target: Tensor,
            is_sequence: bool) -> None:
    encoded.sources.append(source)
    encoded.targets.append(target)
    encoded.source_lengths.append(0 if source is None else source.size(0))
    encoded.target_lengths.append(target.size(0) if is_sequence else 0)
    encoded.examples.append(example)


def _count_tokens(stats: dict[str, int], source: Tensor | None, target: Tensor | None) -> None:
    """Add an example's token ids and UNK ids, per side, to ``stats`` (lists: faster than tensor
    ops on short sequences, and this runs once per example)."""
    if source is not None and not source.is_floating_point():
        ids = source.tolist()
        stats["source_tokens"] += len(ids)
        stats["source_unk"] += ids.count(UNK)
    if target is not None:
        ids = target.tolist()
        stats["target_tokens"] += len(ids) - ids.count(BOS) - ids.count(EOS)
        stats["target_unk"] += ids.count(UNK)


def _report(encoded: EncodedSplit, data: DataConfig, evaluation: bool, long_sides: set[str],
            warn: bool) -> None:
    """The counts at info; what a user must know (examples not used as they are, <unk>) as warnings."""
    split, stats = encoded.split, encoded.stats
    rates = encoded.unk_rates()
    logger.info("%s: %d examples, %d kept, %d truncated, %d dropped as too long, %d empty; <unk>: %s",
                split, stats["examples"], stats["kept"], stats["truncated"], stats["dropped"],
                stats["empty"], ", ".join(f"{side} {_percent(rate)}" for side, rate in rates.items()) or "-")
    if not warn:
        return

    def say(count: int, what: str) -> None:
        if count:
            logger.warning("%s: %s of %s examples %s", split, f"{count:,}", f"{stats['examples']:,}", what)

    limits = " / ".join(f"{'data.' if i == 0 else ''}max_{side}_len={getattr(data, f'max_{side}_len')}"
                        for i, side in enumerate(sorted(long_sides)))
    say(stats["dropped"], f"dropped as longer than {limits}")
    say(stats["truncated"], f"truncated for the model to {limits} (scored against their full references)"
        if evaluation else f'truncated to {limits} (data.too_long = "truncate")')
    say(stats["empty"], "with no source token (empty after tokenization) scored as empty predictions "
        "against their references" if evaluation else "skipped: no source token (empty after tokenization)")
    threshold = 0.0 if evaluation else TRAIN_UNK_WARNING
    unknown = [f"{_percent(rate)} of {side} tokens ({stats[f'{side}_unk']:,} of {stats[f'{side}_tokens']:,})"
               for side, rate in rates.items() if rate > threshold]
    if unknown:
        logger.warning("%s: %s are <unk>: the tokenizer fit on train cannot represent them", split,
                       " and ".join(unknown))


def _percent(fraction: float) -> str:
    """0.1234 -> '12%', 0.0123 -> '1.2%', 0.0005 -> '0.05%': two significant digits below 10%."""
    percent = 100 * fraction
    return f"{percent:.0f}%" if percent >= 10 or percent == 0 else f"{percent:.2g}%"


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
