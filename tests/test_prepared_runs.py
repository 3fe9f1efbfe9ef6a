"""Runs on prepared data: the same end state, bit for bit, as encoding in memory; a second run (or
`seqkit prepare` first) skips fitting and encoding; changed data or a damaged cache is never used."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w
from run_state import assert_same_end_state, end_state

import seqkit

PAIRS = ["one\tun", "two\tdeux", "three\ttrois", "four hundred\tquatre cent", "five\tcinq",
         "six thousand\tsix mille", "seven\tsept", "eight\thuit", "nine\tneuf", "ten\tdix",
         "twenty one\tvingt et un", "forty two\tquarante-deux"]


def translation(tmp_path: Path, steps: int = 6, **data) -> dict:
    (tmp_path / "train.tsv").write_text("\n".join(PAIRS) + "\n", encoding="utf-8")
    (tmp_path / "valid.tsv").write_text("\n".join(PAIRS[:4]) + "\n", encoding="utf-8")
    return {
        "seed": 2,
        "task": {"name": "translation", "train": str(tmp_path / "train.tsv"),
                 "valid": str(tmp_path / "valid.tsv"), "tokenizer": "word", "vocab_size": 60},
        "model": {"d_model": 16, "embedding_dropout": 0.1, "encoder": {"name": "gru", "dropout": 0.1},
                  "decoder": {"name": "gru"}},
        "data": {"batch_tokens": 24, "max_source_len": 1, "max_target_len": 5, **data},
        "train": {"steps": steps, "lr": 3e-3, "warmup_steps": 2, "eval_every": 3, "log_every": 1,
                  "keep_last": 1},
    }


class Phases:
    def __init__(self):
        self.names = []

    def phase(self, name, state, seconds=None):
        if state == "started":
            self.names.append(name)

    def saw(self, prefix: str) -> bool:
        return any(name.startswith(prefix) for name in self.names)


def test_prepared_and_in_memory_runs_end_bit_for_bit_equal(tmp_path, one_thread):
    config = translation(tmp_path)  # max lengths drop some pairs: the same ones both ways
    seqkit.train(config, out=tmp_path / "memory", test=False, data__prepare=False)
    phases = Phases()
    seqkit.train(config, out=tmp_path / "prepared", test=False, events=phases)
    assert phases.saw("preparing the train split")
    assert_same_end_state(end_state(tmp_path / "prepared"), end_state(tmp_path / "memory"))


def test_a_second_run_reuses_the_fitted_state_and_the_prepared_split(tmp_path, one_thread):
    config = translation(tmp_path)
    first = Phases()
    seqkit.train(config, out=tmp_path / "a", test=False, events=first)
    assert first.saw("task.fit") and first.saw("preparing the train split")
    second = Phases()
    seqkit.train(config, out=tmp_path / "b", test=False, events=second)
    assert not second.saw("task.fit") and not second.saw("preparing")
    assert second.saw("reading the prepared task state") and second.saw("reading the prepared train split")
    assert_same_end_state(end_state(tmp_path / "b"), end_state(tmp_path / "a"))


def test_a_resume_may_switch_between_prepared_and_in_memory_data(tmp_path, one_thread):
    """Both give the same batches, so data.prepare may change on resume (like train.* keys)."""
    config = translation(tmp_path, steps=6)
    seqkit.train(config, out=tmp_path / "straight", test=False)
    seqkit.train({**config, "train": {**config["train"], "steps": 3}}, out=tmp_path / "resumed",
                 test=False, data__prepare=False)
    seqkit.train(config, out=tmp_path / "resumed", test=False)
    assert_same_end_state(end_state(tmp_path / "resumed"), end_state(tmp_path / "straight"))


def test_changed_data_is_fitted_and_prepared_again(tmp_path, one_thread):
    config = translation(tmp_path)
    seqkit.train(config, out=tmp_path / "a", test=False)
    with open(tmp_path / "train.tsv", "a", encoding="utf-8") as handle:
        handle.write("eleven\tonze\n")
    phases = Phases()
    result = seqkit.train(config, out=tmp_path / "b", test=False, events=phases)
    assert phases.saw("task.fit") and phases.saw("preparing the train split")
    assert result.summary["step"] == 6


def test_a_damaged_cache_is_said_and_prepared_again(tmp_path, one_thread, caplog):
    config = translation(tmp_path)
    split = seqkit.prepare(config)
    (split.folder / "train.target.bin").write_bytes(b"\x00")
    with caplog.at_level(logging.WARNING, logger="seqkit"):
        seqkit.train(config, out=tmp_path / "run", test=False)
    assert any(f"prepared data {split.folder} damaged (train.target.bin has 1 bytes" in r.getMessage()
               for r in caplog.records)
    seqkit.train(config, out=tmp_path / "memory", test=False, data__prepare=False)
    assert_same_end_state(end_state(tmp_path / "run"), end_state(tmp_path / "memory"))


def test_seqkit_prepare_then_run_starts_from_the_prepared_files(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(tomli_w.dumps(translation(tmp_path)), encoding="utf-8")
    prepared = subprocess.run([sys.executable, "-m", "seqkit", "prepare", str(config)],
                              capture_output=True, text=True)
    assert prepared.returncode == 0, prepared.stderr
    folder, summary = prepared.stdout.splitlines()
    assert Path(folder).is_dir() and (Path(folder) / "manifest.json").is_file()
    assert summary.startswith("train: 8 of 12 examples kept (4 dropped, 0 truncated, 0 empty)")
    assert "task.fit on train" in prepared.stderr
    run = subprocess.run([sys.executable, "-m", "seqkit", "run", str(config), "--out", str(tmp_path / "r")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "task.fit" not in run.stderr and f"reading the prepared train split ({folder})" in run.stderr


def test_prepare_reports_its_phases_and_a_task_without_train_is_an_error(tmp_path):
    phases = Phases()
    split = seqkit.prepare(translation(tmp_path), events=phases)
    assert len(split) == split.stats["kept"] and phases.saw("task.fit")
    with pytest.raises(seqkit.DataError, match="no train split to prepare"):
        seqkit.prepare({"task": {"name": "translation", "valid": str(tmp_path / "valid.tsv")}})


def test_fit_sample_is_seeded_even_and_in_order():
    from seqkit.run_data import fit_sample

    items = list(range(10_000))
    assert list(fit_sample(iter(items), 0)) == items and list(fit_sample(iter(items[:50]), 50)) == items[:50]
    sample = list(fit_sample(iter(items), 1000))
    assert len(sample) == 1000 and sample == sorted(set(sample)) == list(fit_sample(iter(items), 1000))
    quarters = [sum(q * 2500 <= i < (q + 1) * 2500 for i in sample) for q in range(4)]
    assert all(200 <= n <= 300 for n in quarters), quarters  # drawn from the whole split, not its start


def test_task_fit_sees_at_most_data_fit_examples(tmp_path, monkeypatch):
    from seqkit_tasks.translation import TranslationTask

    seen = []
    original = TranslationTask.fit

    def fit(self, train):
        seen.append(list(train))
        original(self, seen[-1])

    monkeypatch.setattr(TranslationTask, "fit", fit)
    seqkit.prepare(translation(tmp_path, fit_examples=5))
    seqkit.prepare(translation(tmp_path), data__fit_examples=0)  # another key: fitted again, on all
    assert [len(examples) for examples in seen] == [5, len(PAIRS)]


def test_what_was_dropped_is_said_again_when_the_prepared_split_is_reused(tmp_path, caplog):
    config = translation(tmp_path)  # max_source_len 1: 4 of the 12 pairs are dropped
    expected = "train: 4 of 12 examples dropped as longer than data.max_source_len=1"
    for _ in range(2):  # prepared, then reused
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="seqkit"):
            seqkit.prepare(config)
        assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("train: ")] == [expected]


def test_a_second_start_reads_no_train_example(tmp_path, monkeypatch, one_thread):
    """Once prepared, a run neither fits, nor encodes, nor checks the train file line by line
    again (the config check skips what preparing read whole): start-up does not grow with it."""
    from seqkit_tasks.translation import TranslationTask

    config = translation(tmp_path)
    seqkit.train(config, out=tmp_path / "a", test=False)
    read = []
    original = TranslationTask.examples
    monkeypatch.setattr(TranslationTask, "examples", lambda self, split: read.append(split) or
                        original(self, split))
    seqkit.train(config, out=tmp_path / "b", test=False)
    assert "train" not in read and "valid" in read
