"""seqkit.data: length limits, token-budget batching, resumable order, collation."""

from __future__ import annotations

import random

import pytest
import torch

from seqkit.config import DataConfig
from seqkit.data import TokenBatchSampler, collate, encode_split
from seqkit.errors import ConfigError, DataError
from seqkit.interfaces import BOS, EOS, PAD, EncodedExample, Example, Task


class ListTask(Task):
    """A seq2seq task over in-memory examples: sources and targets are lists of ids already."""

    model_kind = "seq2seq"

    def __init__(self, examples):
        self.data = examples

    def examples(self, split):
        return iter(self.data)

    def fit(self, train):
        pass

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass

    def model_shape(self):
        return None

    def encode(self, example):
        return EncodedExample(torch.tensor(example.source, dtype=torch.long),
                              torch.tensor([BOS, *example.target, EOS]))

    def decode(self, output):
        return output.tolist()

    def metrics(self, predictions, references):
        return {}


def lengths_task(pairs):
    return ListTask([Example([5] * s, [6] * t, f"mem:{i}") for i, (s, t) in enumerate(pairs)])


def test_encode_split_drops_too_long_examples():
    task = lengths_task([(3, 3), (9, 3), (3, 9), (4, 6)])  # targets are 2 longer: bos and eos
    encoded = encode_split(task, "train", DataConfig(max_source_len=4, max_target_len=8))
    assert encoded.stats == {"examples": 4, "kept": 2, "truncated": 0, "dropped": 2, "empty": 0}
    assert encoded.source_lengths == [3, 4] and encoded.target_lengths == [5, 8]
    assert [e.where for e in encoded.examples] == ["mem:0", "mem:3"]
    assert encoded.sizes == [5, 8]


def test_encode_split_truncates_keeping_bos_and_eos():
    task = lengths_task([(3, 3), (9, 3), (3, 9)])
    encoded = encode_split(task, "train", DataConfig(max_source_len=4, max_target_len=6, too_long="truncate"))
    assert encoded.stats == {"examples": 3, "kept": 3, "truncated": 2, "dropped": 0, "empty": 0}
    assert encoded.source_lengths == [3, 4, 3] and encoded.target_lengths == [5, 5, 6]
    assert encoded.targets[2].tolist() == [BOS, 6, 6, 6, 6, EOS]
    assert encoded.examples[2].target == [6] * 9  # the reference stays whole


def test_encode_split_skips_empty_sources_and_rejects_empty_splits():
    encoded = encode_split(lengths_task([(0, 2), (2, 2)]), "train", DataConfig())
    assert encoded.stats["empty"] == 1 and len(encoded) == 1
    with pytest.raises(DataError, match="^valid: the split has no examples"):
        encode_split(lengths_task([]), "valid", DataConfig())
    with pytest.raises(DataError, match="^test: none of the 2 examples is left"):
        encode_split(lengths_task([(9, 1), (9, 1)]), "test", DataConfig(max_source_len=4))
    with pytest.raises(ConfigError, match="max_target_len"):
        encode_split(lengths_task([(1, 5)]), "train", DataConfig(max_target_len=1, too_long="truncate"))


def random_sizes(n=300, seed=0):
    rng = random.Random(seed)
    return [rng.randint(1, 40) for _ in range(n)]


def test_batches_respect_the_token_budget_and_cover_every_example_once():
    sizes = random_sizes() + [100, 250]  # two examples larger than the budget
    sampler = TokenBatchSampler(sizes, batch_tokens=90, seed=3)
    for batches in (sampler.epoch_batches(0), sampler.epoch_batches(1), sampler.ordered_batches()):
        assert sorted(i for batch in batches for i in batch) == list(range(len(sizes)))
        for batch in batches:
            cost = max(sizes[i] for i in batch) * len(batch)
            assert cost <= 90 or len(batch) == 1
        assert len(batches) == len(sampler)
    assert [100] in [[sizes[i] for i in b] for b in sampler.epoch_batches(0)]


def test_batches_are_runs_of_the_length_order():
    sizes = random_sizes()
    batches = TokenBatchSampler(sizes, batch_tokens=200, seed=0).epoch_batches(0)
    ranges = sorted((min(sizes[i] for i in b), max(sizes[i] for i in b)) for b in batches)
    assert all(high <= next_low for (_, high), (next_low, _) in zip(ranges, ranges[1:], strict=False))


def test_same_seed_same_batches_other_epoch_other_order():
    sizes = random_sizes()
    a, b = TokenBatchSampler(sizes, 120, seed=7), TokenBatchSampler(sizes, 120, seed=7)
    assert a.epoch_batches(0) == b.epoch_batches(0)
    assert a.epoch_batches(0) != a.epoch_batches(1)
    assert a.epoch_batches(0) != TokenBatchSampler(sizes, 120, seed=8).epoch_batches(0)
    ordered = a.ordered_batches()
    assert ordered == b.ordered_batches()
    flat = [sizes[i] for batch in ordered for i in batch]
    assert flat == sorted(flat)


def test_resume_from_state_dict_continues_identically():
    sizes = random_sizes(50)
    sampler = TokenBatchSampler(sizes, 60, seed=1)
    per_epoch = len(sampler)
    stream = iter(sampler)
    expected = [next(stream) for _ in range(3 * per_epoch)]
    assert expected[:per_epoch] == sampler.epoch_batches(0)

    for stop in (0, 5, per_epoch, per_epoch + 2):
        first = TokenBatchSampler(sizes, 60, seed=1)
        stream = iter(first)
        seen = [next(stream) for _ in range(stop)]
        state = first.state_dict()
        resumed = TokenBatchSampler(sizes, 60, seed=1)
        resumed.load_state_dict(state)
        rest = iter(resumed)
        seen += [next(rest) for _ in range(3 * per_epoch - stop)]
        assert seen == expected


def test_state_counts_batches_handed_out():
    sampler = TokenBatchSampler(random_sizes(50), 60, seed=1)
    per_epoch, stream = len(sampler), iter(sampler)
    assert sampler.state_dict() == {"epoch": 0, "index": 0}
    for _ in range(per_epoch):
        next(stream)
    assert sampler.state_dict() == {"epoch": 0, "index": per_epoch}
    next(stream), next(stream)
    assert sampler.state_dict() == {"epoch": 1, "index": 2}


def test_bad_state_is_rejected():
    sampler = TokenBatchSampler([1, 2, 3], 4)
    with pytest.raises(ValueError, match="does not fit"):
        sampler.load_state_dict({"epoch": 0, "index": 99})
    with pytest.raises(ValueError, match="no examples"):
        TokenBatchSampler([], 4)


def test_collate_tokens():
    examples = [EncodedExample(torch.tensor([4, 5, 6]), torch.tensor([BOS, 7, EOS])),
                EncodedExample(torch.tensor([8]), torch.tensor([BOS, 7, 7, 7, EOS]))]
    batch = collate(examples, [10, 3])
    assert batch.source.tolist() == [[4, 5, 6], [8, PAD, PAD]]
    assert batch.source_mask.tolist() == [[True, True, True], [True, False, False]]
    assert batch.target.tolist() == [[BOS, 7, EOS, PAD, PAD], [BOS, 7, 7, 7, EOS]]
    assert batch.indices.tolist() == [10, 3] and batch.indices.dtype == torch.long
    assert len(batch) == 2


def test_collate_features_classes_values_and_language_model():
    features = [EncodedExample(torch.ones(2, 3), torch.tensor(1)),
                EncodedExample(torch.ones(4, 3), torch.tensor(0))]
    batch = collate(features, [0, 1])
    assert batch.source.shape == (2, 4, 3) and batch.source.dtype == torch.float32
    assert batch.source[0, 2:].abs().sum() == 0
    assert batch.source_mask.sum(1).tolist() == [2, 4]
    assert batch.target.tolist() == [1, 0]

    values = [EncodedExample(torch.ones(2, 1), torch.tensor([0.5, 1.5])) for _ in range(3)]
    assert collate(values, [0, 1, 2]).target.shape == (3, 2)

    lm = [EncodedExample(None, torch.tensor([BOS, 4, EOS])), EncodedExample(None, torch.tensor([BOS, EOS]))]
    batch = collate(lm, [0, 1])
    assert batch.source is None and batch.source_mask is None
    assert batch.target.tolist() == [[BOS, 4, EOS], [BOS, EOS, PAD]]


def test_encoded_split_batches():
    encoded = encode_split(lengths_task([(3, 1), (1, 4), (2, 2)]), "train", DataConfig())
    batch = encoded.batch([2, 0])
    assert batch.source.shape == (2, 3) and batch.target.shape == (2, 4)
    assert batch.indices.tolist() == [2, 0]
