"""Encoding many examples at once (Task.encode_batch, the tokenizers library's batch encoding, the
length limits on whole arrays) gives exactly what encoding one example at a time gives: the same
ids kept, dropped and cut, the same counts, the same prepared bytes."""

from __future__ import annotations

import numpy as np
import pytest

from seqkit.config import load_config
from seqkit.data import SplitEncoder
from seqkit.data_cache import Prepared
from seqkit.interfaces import EOS
from seqkit.plugins import make_plugin_manager
from seqkit.ragged import TokenArrays
from seqkit.run_data import _encoded, batched
from seqkit.tokenizer import Tokenizer
from seqkit.trained import build_task

MANAGER = make_plugin_manager()
LINES = ["one two\tun deux", "three\ttrois", "\tvide", "four five six seven\tquatre cinq six sept",
         "a <bos> b\tx <eos> y", "zzz qqq\tunknown words", "eight\thuit huit huit huit huit",
         "nine\tneuf", "%s ten\t%s dix"]


def test_token_arrays_operations():
    arrays = TokenArrays.from_lists([[5, 6], [], [7, 8, 9, 10]])
    assert [r.tolist() for r in arrays.rows()] == [[5, 6], [], [7, 8, 9, 10]]
    assert [r.tolist() for r in arrays.framed(1, 2).rows()] == [[1, 5, 6, 2], [1, 2], [1, 7, 8, 9, 10, 2]]
    assert [r.tolist() for r in arrays.framed(None, 2).rows()] == [[5, 6, 2], [2], [7, 8, 9, 10, 2]]
    assert [r.tolist() for r in arrays.cut(3).rows()] == [[5, 6], [], [7, 8, 9]]
    assert [r.tolist() for r in arrays.cut(3, keep_last=True).rows()] == [[5, 6], [], [7, 8, 10]]
    assert [r.tolist() for r in arrays.take(np.array([False, True, True])).rows()] == [[], [7, 8, 9, 10]]
    assert len(TokenArrays.from_lists([]).cut(2)) == 0


@pytest.mark.parametrize("kind, options", [
    ("char", {}), ("word", {"lowercase": True}), ("bpe", {"normalize": "nfkc", "whitespace": "collapse"}),
    ("bpe", {"user_tokens": ["%s"], "byte_fallback": True}),
])
def test_tokenizer_batch_encoding_equals_one_by_one(kind, options):
    texts = [line.replace("\t", " ") for line in LINES] + ["Ünïcödé ﬁ", "", "<pad><unk>"]
    tokenizer = Tokenizer.train(kind, texts[:6], 300 if options.get("byte_fallback") else 40, **options)
    arrays = tokenizer.encode_batch(texts)
    assert [r.tolist() for r in arrays.rows()] == [tokenizer.encode(t) for t in texts]


def task_and_data(tmp_path, name, too_long, **options):
    if name == "translation":
        (tmp_path / "train.tsv").write_text("\n".join(LINES) + "\n", encoding="utf-8")
        task = {"name": "translation", "train": str(tmp_path / "train.tsv"), "tokenizer": "word",
                "vocab_size": 12, "user_tokens": ["%s"], **options}
    else:
        texts = [line.split("\t")[1] for line in LINES]
        (tmp_path / "train.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
        task = {"name": "language_model", "train": str(tmp_path / "train.txt"), "tokenizer": "char",
                "vocab_size": 14}
    config = load_config({"task": task, "data": {"max_source_len": 3, "max_target_len": 5,
                                                 "too_long": too_long}}, manager=MANAGER)
    built = build_task(config, MANAGER)
    built.fit(built.examples("train"))
    return config, built


@pytest.mark.parametrize("name", ["translation", "language_model"])
@pytest.mark.parametrize("too_long", ["drop", "truncate"])
@pytest.mark.parametrize("size", [1, 3, 100])
def test_chunks_keep_and_count_what_one_by_one_does(tmp_path, name, too_long, size):
    config, task = task_and_data(tmp_path, name, too_long)
    assert batched(task)
    one = SplitEncoder(task, "train", config.data, evaluation=False)
    expected = [(None if s is None else s.tolist(), t.tolist()) for _, s, t, _ in one]
    many = SplitEncoder(task, "train", config.data, evaluation=False)
    got = []
    for source, target, _ in many.chunks(size):
        rows = [None] * len(target) if source is None else [r.tolist() for r in source.rows()]
        got += list(zip(rows, [r.tolist() for r in target.rows()], strict=True))
    assert got == expected
    assert many.finish() == one.finish() and many.long_sides == one.long_sides
    assert one.stats["empty" if name == "translation" else "examples"] > 0


def test_prepared_bytes_are_the_same_either_way(tmp_path):
    config, task = task_and_data(tmp_path, "translation", "truncate")

    def one_by_one(task, split, data, stats):
        encoder = SplitEncoder(task, split, data, evaluation=False)
        for example, source, target, _ in encoder:
            yield source, target, example.where
        stats.update(encoder.finish())

    folders = []
    for root, encode in (("a", one_by_one), ("b", _encoded)):
        split = Prepared.of("translation", config.task.options, tmp_path / root).split(
            task, "train", config.data, encode)
        folders.append(split.folder)
    for name in ("train.source.bin", "train.source.idx", "train.target.bin", "train.target.idx"):
        assert (folders[0] / name).read_bytes() == (folders[1] / name).read_bytes(), name


def test_a_max_target_len_below_two_is_the_same_error_either_way(tmp_path):
    from seqkit.errors import ConfigError

    config, task = task_and_data(tmp_path, "translation", "truncate")
    config.data.max_target_len = 1
    with pytest.raises(ConfigError, match="data.max_target_len: must be at least 2"):
        list(SplitEncoder(task, "train", config.data, evaluation=False).chunks())


def test_source_eos_ends_every_source_either_way(tmp_path):
    """Marian-style sources ([...ids, eos]), as `seqkit import hf` configures: encode and encode_batch
    agree, and the eos counts within data.max_source_len."""
    config, task = task_and_data(tmp_path, "translation", "truncate", source_eos=True)
    examples = list(task.examples("train"))
    one = [task.encode(e).source.tolist() for e in examples]
    assert all(ids[-1] == EOS and EOS not in ids[:-1] for ids in one)
    assert [r.tolist() for r in task.encode_batch(examples).source.rows()] == one
    kept = SplitEncoder(task, "train", config.data, evaluation=False)
    assert all(len(source) <= config.data.max_source_len for _, source, _, _ in kept)
