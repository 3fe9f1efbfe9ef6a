"""Prepared data: the train split written once to memory-mapped files gives the same batches, bit for
bit, as encoding it in memory; it is reused while the data are unchanged, never used once they change,
and a damaged folder is found and prepared again."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from seqkit.batching import TokenBatchSampler
from seqkit.config import load_config
from seqkit.data import encode_split
from seqkit.data_cache import Prepared
from seqkit.errors import DataError
from seqkit.plugins import make_plugin_manager
from seqkit.prepared import open_split
from seqkit.trained import build_task

MANAGER = make_plugin_manager()
PAIRS = ["one\tun", "two\tdeux", "three hundred\ttrois cent", "forty-two\tquarante-deux",
         "seven thousand and one\tsept mille un", "nine\tneuf", "twelve\tdouze", "a b c d e f g\tx"]


def encode_in_memory(task, split, data, stats):
    """An encoder for Prepared.split: encode_split's kept examples, one at a time."""
    encoded = encode_split(task, split, data)
    stats.update(encoded.stats)
    for i in range(len(encoded)):
        yield encoded.sources[i], encoded.targets[i], encoded.examples[i].where


class Counting:
    def __init__(self):
        self.calls = 0

    def __call__(self, *args):
        self.calls += 1
        return encode_in_memory(*args)


def config_for(kind, tmp_path):
    data = {"max_source_len": 4, "max_target_len": 10 if kind == "language_model" else 6,
            "too_long": "drop", "batch_tokens": 16}
    if kind == "translation":
        (tmp_path / "train.tsv").write_text("\n".join(PAIRS) + "\n", encoding="utf-8")
        task = {"name": "translation", "train": str(tmp_path / "train.tsv"), "tokenizer": "word",
                "vocab_size": 40}
    elif kind == "reverse":
        task = {"name": "reverse", "symbols": 7, "min_len": 1, "max_len": 6, "train_size": 50,
                "valid_size": 0, "test_size": 0}
    elif kind == "classification":
        lines = ["good film\tpos", "bad film\tneg", "very good\tpos", "awful\tneg"]
        (tmp_path / "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        task = {"name": "classification", "train": str(tmp_path / "train.tsv"), "vocab_size": 20}
    elif kind == "language_model":
        (tmp_path / "train.txt").write_text("cat\non a mat\nhello there\n", encoding="utf-8")
        task = {"name": "language_model", "train": str(tmp_path / "train.txt"), "tokenizer": "char",
                "vocab_size": 40}
    else:  # regression: float feature vectors
        rows = ["1.5,0.1,0.2,0.3,0.4", "2.5,1,2", "-1,3,4,5,6,7,8", "0,0.5,0.25"]
        (tmp_path / "train.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        task = {"name": "regression", "train": str(tmp_path / "train.csv"), "features": 2}
    model = {"d_model": 8, "encoder": {"name": "gru"}}
    if kind in ("translation", "reverse", "language_model"):
        model["decoder"] = {"name": "gru"}
    if kind == "language_model":
        del model["encoder"]
    return load_config({"task": task, "data": data, "model": model}, manager=MANAGER)


def fitted(config):
    task = build_task(config, MANAGER)
    task.fit(task.examples("train"))
    return task


def assert_same_batch(a, b):
    for name in ("source", "source_mask", "target", "indices"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype and torch.equal(x, y), name


@pytest.mark.parametrize("kind", ["translation", "reverse", "classification", "language_model",
                                  "regression"])
def test_prepared_batches_equal_in_memory_batches_bit_for_bit(kind, tmp_path):
    config = config_for(kind, tmp_path)
    task = fitted(config)
    memory = encode_split(task, "train", config.data)
    prepared = Prepared.of(config.task.name, config.task.options, tmp_path / "cache")
    split = prepared.split(task, "train", config.data, encode_in_memory)
    assert len(split) == len(memory) and split.stats == memory.stats
    assert split.sizes.tolist() == memory.sizes
    sampler = TokenBatchSampler(split.sizes, config.data.batch_tokens, seed=1)
    for indices in [*sampler.epoch_batches(0), *sampler.epoch_batches(1)]:
        assert_same_batch(split.batch(indices), memory.batch(indices))


def test_token_ids_are_stored_in_two_bytes_when_the_vocabulary_allows(tmp_path):
    config = config_for("translation", tmp_path)
    task = fitted(config)
    split = Prepared.of("translation", config.task.options, tmp_path / "cache").split(
        task, "train", config.data, encode_in_memory)
    assert {f.meta["store"] for f in split.fields.values()} == {"uint16"}
    values = sum(f.meta["values"] for f in split.fields.values())
    assert sum((split.folder / f"train.{n}.bin").stat().st_size for n in split.fields) == 2 * values


def test_a_second_run_reuses_the_prepared_split_and_a_changed_file_is_prepared_again(tmp_path):
    config = config_for("translation", tmp_path)
    task = fitted(config)
    encode = Counting()
    first = Prepared.of("translation", config.task.options, tmp_path / "cache")
    first.split(task, "train", config.data, encode)
    again = Prepared.of("translation", config.task.options, tmp_path / "cache")
    assert again.folder == first.folder
    again.split(task, "train", config.data, encode)
    assert encode.calls == 1
    with open(tmp_path / "train.tsv", "a", encoding="utf-8") as handle:
        handle.write("ten\tdix\n")
    changed = Prepared.of("translation", config.task.options, tmp_path / "cache")
    assert changed.folder != first.folder  # stale data is never found
    split = changed.split(fitted(config), "train", config.data, encode)
    assert encode.calls == 2 and split.stats["examples"] == len(PAIRS) + 1


def test_the_same_data_elsewhere_shares_the_prepared_data(tmp_path):
    """The key holds the files' contents, not their paths: a moved copy of the data reuses it."""
    config = config_for("translation", tmp_path)
    (tmp_path / "moved").mkdir()
    (tmp_path / "moved" / "data.tsv").write_bytes((tmp_path / "train.tsv").read_bytes())
    moved = load_config({"task": {"name": "translation", "train": str(tmp_path / "moved" / "data.tsv"),
                                  "tokenizer": "word", "vocab_size": 40}}, manager=MANAGER)
    assert Prepared.of("translation", moved.task.options).key == \
        Prepared.of("translation", config.task.options).key


@pytest.mark.parametrize("damage", ["truncate", "flip", "manifest", "missing"])
def test_a_damaged_folder_is_reported_and_prepared_again(tmp_path, damage, caplog):
    config = config_for("translation", tmp_path)
    task = fitted(config)
    prepared = Prepared.of("translation", config.task.options, tmp_path / "cache")
    encode = Counting()
    split = prepared.split(task, "train", config.data, encode)
    expected = [split.batch([i]).target.tolist() for i in range(len(split))]
    target = split.folder / "train.target.bin"
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:-2])
    elif damage == "flip":
        data = bytearray(target.read_bytes())
        data[3] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "manifest":
        (split.folder / "manifest.json").write_text("{not json", encoding="utf-8")
    else:
        (split.folder / "train.source.idx").unlink()
    with caplog.at_level(logging.WARNING):
        again = prepared.split(task, "train", config.data, encode)
    assert encode.calls == 2
    assert any("damaged" in r.getMessage() and str(split.folder) in r.getMessage() for r in caplog.records)
    assert [again.batch([i]).target.tolist() for i in range(len(again))] == expected


def test_a_folder_another_process_finished_first_is_kept(tmp_path):
    config = config_for("translation", tmp_path)
    task = fitted(config)
    prepared = Prepared.of("translation", config.task.options, tmp_path / "cache")
    split = prepared.split(task, "train", config.data, encode_in_memory)
    manifest = (split.folder / "manifest.json").read_text()
    from seqkit.prepared import write_folder

    write_folder(split.folder, "train", encode_in_memory(task, "train", config.data, {}), {},
                 {"source": 40, "target": 40}, {})
    assert (split.folder / "manifest.json").read_text() == manifest
    assert [p.name for p in split.folder.parent.iterdir() if ".tmp-" in p.name] == []
    assert open_split(split.folder, "train") is not None


def test_a_token_id_outside_the_vocabulary_is_a_data_error(tmp_path):
    config = config_for("translation", tmp_path)
    task = fitted(config)

    def bad(task, split, data, stats):
        yield torch.tensor([5, 70000]), torch.tensor([1, 2]), "train.tsv:3"

    with pytest.raises(DataError, match=r"train.tsv:3: the task encoded token id 70000, outside"):
        Prepared.of("translation", config.task.options, tmp_path / "cache").split(
            task, "train", config.data, bad)


def test_the_fitted_state_is_kept_beside_the_encodings(tmp_path):
    config = config_for("translation", tmp_path)
    prepared = Prepared.of("translation", config.task.options, tmp_path / "cache")
    assert prepared.state() is None
    task = fitted(config)
    prepared.save_state(task.state_dict())
    assert prepared.state() == json.loads(json.dumps(task.state_dict()))
    (prepared.folder / "task_state.json").write_text("garbage", encoding="utf-8")
    assert prepared.state() is None


def test_a_reader_that_trusts_the_folder_never_removes_it(tmp_path):
    """Under torchrun the other ranks open what rank 0 has just checked: without reading it through
    again, and a fault they meet is theirs to report, not a reason to delete rank 0's files."""
    config = config_for("translation", tmp_path)
    split = Prepared.of("translation", config.task.options, tmp_path / "cache").split(
        fitted(config), "train", config.data, encode_in_memory)
    assert open_split(split.folder, "train", verify=False) is not None
    target = split.folder / "train.target.bin"
    target.write_bytes(target.read_bytes()[:-2])
    assert open_split(split.folder, "train", verify=False) is None and target.exists()
    assert open_split(split.folder, "train") is None and not split.folder.exists()  # a checking reader


def test_rows_are_read_from_the_files_not_mapped_and_a_file_cut_under_a_reader_is_an_error(tmp_path):
    config = config_for("translation", tmp_path)
    split = Prepared.of("translation", config.task.options, tmp_path / "cache").split(
        fitted(config), "train", config.data, encode_in_memory)
    opened = open_split(split.folder, "train")
    before = [opened[i].target.tolist() for i in range(len(opened))]
    with open("/proc/self/maps") as maps:
        mapped = maps.read()
    assert "train.target.bin" not in mapped and "train.source.idx" not in mapped  # pread, no memory map
    target = split.folder / "train.target.bin"
    target.write_bytes(target.read_bytes()[:-2])  # cut while open: the last row now reads short
    assert [opened[i].target.tolist() for i in range(len(opened) - 1)] == before[:-1]
    with pytest.raises(DataError, match=r"train\.target\.bin: shorter than its manifest says"):
        opened.batch(range(len(opened)))
