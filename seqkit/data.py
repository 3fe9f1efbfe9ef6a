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

import itertools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from seqkit.batching import TokenBatchSampler
from seqkit.errors import ConfigError, DataError
from seqkit.interfaces import BOS, EOS, PAD, UNK, Batch, EncodedExample, Example, Task
from seqkit.ragged import TokenArrays

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
    def features(self) -> bool:
        """Whether sources are feature vectors (not token ids)."""
        return any(s is not None and s.is_floating_point() for s in self.sources[:1])

    @property
    def tokens(self) -> int:
        """Token ids in the split: sources (not float features) and target sequences."""
        return (0 if self.features else sum(self.source_lengths)) + sum(self.target_lengths)

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
        """The fraction of each side's tokens that are UNK (see ``unk_rates``)."""
        return unk_rates(self.stats)


def unk_rates(stats: dict[str, int]) -> dict[str, float]:
    """The fraction of each side's tokens that are UNK: what the tokenizers could not represent
    ({} sides without token ids: float features, class or value targets)."""
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
    encoder = SplitEncoder(task, split, data, evaluation)
    encoded = EncodedSplit(split)
    for example, source, target, empty in encoder:
        if empty:
            encoded.empty.append(len(encoded))
        encoded.sources.append(source)
        encoded.targets.append(target)
        encoded.source_lengths.append(0 if source is None else source.size(0))
        encoded.target_lengths.append(target.size(0) if _is_sequence(target) else 0)
        encoded.examples.append(example)
    encoded.stats = encoder.finish(warn)
    return encoded


class SplitEncoder:
    """One split encoded example by example under the ``[data]`` limits (see ``encode_split``):
    iterating gives each example kept, as (example, source, target, empty), with nothing held in
    memory; ``finish()`` then checks that something was kept, reports, and returns the counts."""

    def __init__(self, task: Task, split: str, data: DataConfig, evaluation: bool | None = None):
        self.task, self.split, self.data = task, split, data
        self.evaluation = split != "train" if evaluation is None else evaluation
        self.stats = dict.fromkeys(COUNTS, 0)
        self.long_sides: set[str] = set()  # which limits the dropped or truncated examples broke
        self.last: Example | None = None

    def __iter__(self) -> Iterator[tuple[Example, Tensor | None, Tensor, bool]]:
        data, stats, evaluation, split = self.data, self.stats, self.evaluation, self.split
        truncate = evaluation or data.too_long == "truncate"
        for example in self.task.examples(split):
            self.last = example
            stats["examples"] += 1
            item = self.task.encode(example)
            source, target = item.source, item.target
            is_sequence = _is_sequence(target)
            _count_tokens(stats, source, target if is_sequence else None)
            if source is not None and source.size(0) == 0:
                stats["empty"] += 1
                if not evaluation:
                    continue
                if not is_sequence:
                    kind = getattr(self.task, "model_kind", "model")
                    raise DataError(f"{example.where or split}: no source token (empty after tokenization); "
                                    f"a {kind} cannot predict without one, and every example of split "
                                    f"{split} is scored: fix or remove it")
                stats["kept"] += 1
                yield example, source, target, True
                continue
            source_long = source is not None and source.size(0) > data.max_source_len
            target_long = is_sequence and target.size(0) > data.max_target_len
            if source_long or target_long:
                self.long_sides.update(side for side, long in (("source", source_long),
                                                               ("target", target_long)) if long)
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
            stats["kept"] += 1
            yield example, source, target, False

    def chunks(self, size: int = 8192) -> Iterator[tuple[TokenArrays | None, TokenArrays, str]]:
        """What iterating gives, for a task with ``encode_batch`` and training semantics (not
        evaluation): ``size`` examples at a time encoded together, the limits applied to whole
        arrays; each chunk as (sources, targets, where its first example is). The same kept ids and
        the same counts as the example-by-example path (tested)."""
        if self.evaluation:
            raise ValueError("chunks() is for a train split (evaluation keeps every example)")
        data, stats = self.data, self.stats
        truncate = data.too_long == "truncate"
        examples = iter(self.task.examples(self.split))
        while chunk := list(itertools.islice(examples, size)):
            self.last = chunk[-1]
            batch = self.task.encode_batch(chunk)
            source, target = batch.source, batch.target
            stats["examples"] += len(chunk)
            if source is not None:
                stats["source_tokens"] += int(source.lengths.sum())
                stats["source_unk"] += int(np.count_nonzero(source.ids == UNK))
            framing = np.count_nonzero(target.ids == BOS) + np.count_nonzero(target.ids == EOS)
            stats["target_tokens"] += int(target.lengths.sum()) - int(framing)
            stats["target_unk"] += int(np.count_nonzero(target.ids == UNK))
            empty = source.lengths == 0 if source is not None else np.zeros(len(chunk), dtype=bool)
            source_long = (source.lengths > data.max_source_len) & ~empty if source is not None else empty
            target_long = (target.lengths > data.max_target_len) & ~empty
            long = source_long | target_long
            self.long_sides.update(side for side, flags in (("source", source_long), ("target", target_long))
                                   if flags.any())
            stats["empty"] += int(empty.sum())
            if truncate:
                if target_long.any() and data.max_target_len < 2:
                    raise ConfigError(f"data.max_target_len: must be at least 2 to hold bos and eos, "
                                      f"got {data.max_target_len}")
                keep = ~empty
                stats["truncated"] += int(long.sum())
            else:
                keep = ~empty & ~long
                stats["dropped"] += int(long.sum())
            stats["kept"] += int(keep.sum())
            yield (source.take(keep).cut(data.max_source_len) if source is not None else None,
                   target.take(keep).cut(data.max_target_len, keep_last=True), chunk[0].where)

    def finish(self, warn: bool = True) -> dict[str, int]:
        """The counts, once every example has been through; a DataError when the split had none
        or none a model can take."""
        stats, data, split = self.stats, self.data, self.split
        if stats["examples"] == 0:
            raise DataError(f"{split}: the split has no examples")
        if stats["kept"] == (stats["empty"] if self.evaluation else 0):  # nothing a model can take
            file = (getattr(self.last, "where", None) or "").rpartition(":")[0]  # of "file:line"
            origin = f"{file}: split {split}" if file and Path(file).is_file() else split
            raise DataError(f"{origin}: none of the {stats['examples']} examples is left "
                            f"({stats['dropped']} longer than data.max_source_len={data.max_source_len} or "
                            f"data.max_target_len={data.max_target_len}, {stats['empty']} with an empty "
                            "source)")
        report_counts(split, stats, data, self.evaluation, self.long_sides, warn)
        return stats


def _is_sequence(target: Tensor) -> bool:
    """A target of token ids (not a class index or values)."""
    return target.dim() == 1 and not target.is_floating_point()


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


def report_counts(split: str, stats: dict[str, int], data: DataConfig, evaluation: bool,
            long_sides: set[str], warn: bool) -> None:
    """The counts at info; what a user must know (examples not used as they are, <unk>) as warnings."""
    rates = unk_rates(stats)
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
