"""seqkit.data: length limits, token-budget batching, resumable order, collation."""

from __future__ import annotations

import logging
import random

import pytest
import torch

from seqkit.config import DataConfig
from seqkit.data import TokenBatchSampler, collate, encode_split
from seqkit.errors import ConfigError, DataError
from seqkit.interfaces import BOS, EOS, PAD, UNK, EncodedExample, Example, Task


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


def counts(encoded):
    """The example counts of a split's stats (they also count tokens and <unk> tokens)."""
    return {k: encoded.stats[k] for k in ("examples", "kept", "truncated", "dropped", "empty")}


def test_encode_split_drops_too_long_examples():
    task = lengths_task([(3, 3), (9, 3), (3, 9), (4, 6)])  # targets are 2 longer: bos and eos
    encoded = encode_split(task, "train", DataConfig(max_source_len=4, max_target_len=8))
    assert counts(encoded) == {"examples": 4, "kept": 2, "truncated": 0, "dropped": 2, "empty": 0}
    assert encoded.source_lengths == [3, 4] and encoded.target_lengths == [5, 8]
    assert [e.where for e in encoded.examples] == ["mem:0", "mem:3"]
    assert encoded.sizes == [5, 8]


def test_encode_split_truncates_keeping_bos_and_eos():
    task = lengths_task([(3, 3), (9, 3), (3, 9)])
    encoded = encode_split(task, "train", DataConfig(max_source_len=4, max_target_len=6, too_long="truncate"))
    assert counts(encoded) == {"examples": 3, "kept": 3, "truncated": 2, "dropped": 0, "empty": 0}
    assert encoded.source_lengths == [3, 4, 3] and encoded.target_lengths == [5, 5, 6]
    assert encoded.targets[2].tolist() == [BOS, 6, 6, 6, 6, EOS]
    assert encoded.examples[2].target == [6] * 9  # the reference stays whole


def test_encode_split_skips_empty_sources_and_rejects_empty_splits():
    encoded = encode_split(lengths_task([(0, 2), (2, 2)]), "train", DataConfig())
    assert encoded.stats["empty"] == 1 and len(encoded) == 1
    with pytest.raises(DataError, match="^valid: the split has no examples"):
        encode_split(lengths_task([]), "valid", DataConfig())
    with pytest.raises(DataError, match="^train: none of the 2 examples is left"):
        encode_split(lengths_task([(9, 1), (9, 1)]), "train", DataConfig(max_source_len=4))
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


# -- evaluation splits see every example (issue 13) -----------------------------------------------


def test_evaluation_splits_truncate_for_the_model_and_keep_every_example():
    task = lengths_task([(3, 3), (9, 3), (3, 9), (4, 6)])
    limits = DataConfig(max_source_len=4, max_target_len=8)  # too_long = "drop" is for train only
    for encoded in (encode_split(task, "valid", limits), encode_split(task, "test", limits),
                    encode_split(task, "train", limits, evaluation=True)):  # Model.evaluate("train")
        assert counts(encoded) == {"examples": 4, "kept": 4, "truncated": 2, "dropped": 0, "empty": 0}
        assert len(encoded) == 4 and [e.where for e in encoded.examples] == [f"mem:{i}" for i in range(4)]
        assert encoded.source_lengths == [3, 4, 3, 4] and encoded.target_lengths == [5, 5, 8, 8]
        assert encoded.targets[2].tolist() == [BOS, *[6] * 6, EOS]  # bos kept, eos last
        assert encoded.examples[1].source == [5] * 9 and encoded.examples[2].target == [6] * 9  # whole
    assert len(encode_split(task, "train", limits)) == 2  # train still drops


def test_an_empty_source_in_an_evaluation_split_is_scored_not_fed_to_the_model():
    task = lengths_task([(2, 2), (0, 3), (1, 1)])
    encoded = encode_split(task, "test", DataConfig())
    assert len(encoded) == 3 and counts(encoded)["empty"] == 1 and counts(encoded)["kept"] == 3
    assert encoded.empty == [1] and encoded.examples[1].where == "mem:1"
    batches = encoded.model_batches(batch_tokens=1000)
    assert sorted(i for batch in batches for i in batch) == [0, 2]
    train = encode_split(task, "train", DataConfig())
    assert len(train) == 2 and train.empty == [] and counts(train)["empty"] == 1  # skipped in train


class ClassTask(ListTask):
    model_kind = "classifier"

    def encode(self, example):
        return EncodedExample(torch.tensor(example.source, dtype=torch.long), torch.tensor(example.target))


def test_an_empty_source_a_classifier_must_score_is_an_error_naming_its_line():
    task = ClassTask([Example([5, 6], 0, "data/test.tsv:1"), Example([], 1, "data/test.tsv:2")])
    assert len(encode_split(task, "train", DataConfig())) == 1
    with pytest.raises(DataError, match=r"^data/test.tsv:2: no source token \(empty after tokenization\); "
                                        r"a classifier cannot predict without one, and every example of "
                                        r"split test is scored: fix or remove it$"):
        encode_split(task, "test", DataConfig())


def test_unknown_tokens_are_counted_per_side_without_bos_and_eos():
    task = ListTask([Example([5, UNK, 6], [UNK, 7], "mem:0"), Example([UNK], [8, 9, 10], "mem:1"),
                     Example([7] * 9, [UNK] * 9, "mem:2")])  # counted at full length, before truncation
    encoded = encode_split(task, "test", DataConfig(max_source_len=4, max_target_len=4))
    stats = encoded.stats
    assert (stats["source_tokens"], stats["source_unk"]) == (13, 2)
    assert (stats["target_tokens"], stats["target_unk"]) == (14, 10)
    assert encoded.unk_rates() == {"source": 2 / 13, "target": 10 / 14}
    features = encode_split(ClassTask([Example([5], 0)]), "test", DataConfig())
    assert features.unk_rates() == {"source": 0.0}  # a class target has no tokens


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_what_was_dropped_truncated_or_skipped_is_a_warning_naming_split_counts_and_limits(caplog):
    caplog.set_level(logging.INFO, logger="seqkit")
    task = lengths_task([(3, 3), (9, 3), (3, 9), (0, 2), (4, 6)] + [(1, 1)] * 1995)
    limits = DataConfig(max_source_len=4, max_target_len=8)
    encode_split(task, "train", limits)
    assert warnings_of(caplog) == [
        "train: 2 of 2,000 examples dropped as longer than data.max_source_len=4 / max_target_len=8",
        "train: 1 of 2,000 examples skipped: no source token (empty after tokenization)"]
    caplog.clear()
    encode_split(task, "test", limits)
    assert warnings_of(caplog) == [
        "test: 2 of 2,000 examples truncated for the model to data.max_source_len=4 / max_target_len=8 "
        "(scored against their full references)",
        "test: 1 of 2,000 examples with no source token (empty after tokenization) scored as empty "
        "predictions against their references"]
    caplog.clear()
    encode_split(lengths_task([(9, 1)] * 3 + [(1, 1)]), "train", DataConfig(max_source_len=4,
                                                                             too_long="truncate"))
    assert warnings_of(caplog) == ["train: 3 of 4 examples truncated to data.max_source_len=4 "
                                   "(data.too_long = \"truncate\")"]
    caplog.clear()
    encode_split(lengths_task([(1, 1)] * 3), "test", limits)
    assert warnings_of(caplog) == []  # nothing to say
    assert any("test: 3 examples" in r.getMessage() for r in caplog.records)  # the counts, at info


def test_unknown_tokens_are_a_warning_in_evaluation_splits_and_above_a_tenth_of_a_percent_in_train(caplog):
    caplog.set_level(logging.WARNING, logger="seqkit")
    one_unknown = [Example([UNK] + [5] * 99, [6] * 100, "mem:0")] + [Example([5] * 100, [6] * 100)] * 19
    encode_split(ListTask(one_unknown), "test", DataConfig(max_source_len=100, max_target_len=102))
    assert warnings_of(caplog) == ["test: 0.05% of source tokens (1 of 2,000) are <unk>: the "
                                   "tokenizer fit on train cannot represent them"]
    caplog.clear()
    encode_split(ListTask(one_unknown), "train", DataConfig(max_source_len=100, max_target_len=102))
    assert warnings_of(caplog) == []  # 1 in 2,000 of its own training data: the vocabulary's cut
    many = [Example([UNK, 5], [UNK, UNK, 6, 6], "mem:0")] + [Example([5, 5], [6, 6, 6, 6])] * 4
    encode_split(ListTask(many), "train", DataConfig())
    assert warnings_of(caplog) == ["train: 10% of source tokens (1 of 10) and 10% of target tokens "
                                   "(2 of 20) are <unk>: the tokenizer fit on train cannot represent them"]


def test_a_process_that_does_not_warn_keeps_the_counts_at_info(caplog):
    """warn=False: the ranks of a distributed run but rank 0 encode the same data and say nothing."""
    caplog.set_level(logging.INFO, logger="seqkit")
    encoded = encode_split(lengths_task([(9, 1), (1, 1)]), "train", DataConfig(max_source_len=4), warn=False)
    assert encoded.stats["dropped"] == 1 and warnings_of(caplog) == []
    assert [r.getMessage() for r in caplog.records] == [
        "train: 2 examples, 1 kept, 0 truncated, 1 dropped as too long, 0 empty; <unk>: source 0%, target 0%"]
