"""A split may be several files (shards): a glob pattern in a file option reads every matching file
in sorted order, and the prepared data's key changes when a shard is added, removed or changed."""

from __future__ import annotations

import pytest

import seqkit
from seqkit.config import load_config
from seqkit.data_cache import Prepared
from seqkit.errors import DataError
from seqkit.plugins import make_plugin_manager
from seqkit.trained import build_task

MANAGER = make_plugin_manager()
PAIRS = ["one\tun", "two\tdeux", "three\ttrois", "four\tquatre", "five\tcinq", "six\tsix"]


def shards(tmp_path, suffix=".tsv", lines=PAIRS, parts=3):
    folder = tmp_path / "shards"
    folder.mkdir(exist_ok=True)
    size = len(lines) // parts
    for i in range(parts):
        (folder / f"part-{i:02d}{suffix}").write_text("\n".join(lines[i * size:(i + 1) * size]) + "\n",
                                                     encoding="utf-8")
    return folder


def task(options):
    return build_task(load_config({"task": options}, manager=MANAGER), MANAGER)


def test_a_pattern_reads_every_shard_in_order(tmp_path):
    folder = shards(tmp_path)
    (folder / "notes.txt").write_text("not data\n")
    examples = list(task({"name": "translation", "train": str(folder / "part-*.tsv")}).examples("train"))
    assert [(e.source, e.target) for e in examples] == [tuple(p.split("\t")) for p in PAIRS]
    assert examples[0].where.endswith("part-00.tsv:1") and examples[-1].where.endswith("part-02.tsv:2")


@pytest.mark.parametrize("name, options, suffix, lines", [
    ("language_model", {}, ".txt", ["a b", "c d", "e f"]),
    ("classification", {}, ".tsv", ["good\tpos", "bad\tneg", "fine\tpos"]),
    ("regression", {"features": 1}, ".csv", ["1,2,3", "2,3", "0.5,1,1"]),
])
def test_every_file_task_reads_shards(tmp_path, name, options, suffix, lines):
    folder = shards(tmp_path, suffix, lines)
    built = task({"name": name, "train": str(folder / f"part-*{suffix}"), **options})
    examples = list(built.examples("train"))
    assert [e.where.rpartition(":")[0].rpartition("/")[2] for e in examples] == \
        [f"part-00{suffix}", f"part-01{suffix}", f"part-02{suffix}"]


def test_parallel_shards_pair_their_prefixes(tmp_path):
    folder = tmp_path / "par"
    folder.mkdir()
    for i, (en, fr) in enumerate([("one", "un"), ("two", "deux")]):
        (folder / f"train-{i}.en").write_text(en + "\n")
        (folder / f"train-{i}.fr").write_text(fr + "\n")
    examples = list(task({"name": "translation", "format": "parallel", "source_lang": "en",
                          "target_lang": "fr", "train": str(folder / "train-*")}).examples("train"))
    assert [(e.source, e.target) for e in examples] == [("one", "un"), ("two", "deux")]


def test_a_pattern_matching_nothing_names_the_key(tmp_path):
    with pytest.raises(DataError, match=r"^task.train: no file matches .*nothing-\*\.tsv$"):
        list(task({"name": "translation", "train": str(tmp_path / "nothing-*.tsv")}).examples("train"))


def test_adding_or_changing_a_shard_changes_the_prepared_key(tmp_path):
    folder = shards(tmp_path)
    options = load_config({"task": {"name": "translation", "train": str(folder / "part-*.tsv")}},
                          manager=MANAGER).task.options
    first = Prepared.of("translation", options).key
    assert Prepared.of("translation", options).key == first
    (folder / "part-03.tsv").write_text("seven\tsept\n")
    added = Prepared.of("translation", options).key
    (folder / "part-00.tsv").write_text("zero\tzero\n")
    assert len({first, added, Prepared.of("translation", options).key}) == 3


def test_a_run_trains_on_shards(tmp_path):
    folder = shards(tmp_path)
    result = seqkit.train({"task": {"name": "translation", "train": str(folder / "part-*.tsv"),
                                    "tokenizer": "word", "vocab_size": 30},
                           "model": {"d_model": 8, "encoder": {"name": "gru"}, "decoder": {"name": "gru"}},
                           "train": {"steps": 2, "warmup_steps": 1, "eval_every": 2}},
                          out=tmp_path / "run", test=False)
    assert result.summary["step"] == 2
