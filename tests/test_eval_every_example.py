"""Evaluation sees every example of valid and test (issue 13): an over-long example is truncated for
the model and scored against its full reference, an empty source is an empty prediction, and what
encoding dropped, truncated or could not represent (<unk>) is said at normal verbosity."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest

import seqkit
from seqkit.data import encode_split
from seqkit_tasks.translation import TranslationTask

TRAIN = ["ab\tba", "abc\tcba", "ba\tab", "cab\tbac", "bca\tacb", "aab\tbaa", "cc\tcc",
         "abcabcabcabc\tcbacbacbacba"]  # longer than the limits below: train drops it
LONG = "abcabcabcabc\tcbacbacbacba"
EVAL = ["ab\tba", LONG, "ca\tac", "bb\tbb", "cc\tcc"]  # N = 5, one over-long pair


def write(folder, name, lines):
    path = folder / name
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return str(path)


def config(folder, valid=EVAL, test=EVAL, steps=2) -> dict:
    return {"seed": 1,
            "task": {"name": "translation", "tokenizer": "char", "train": write(folder, "train.tsv", TRAIN),
                     "valid": write(folder, "valid.tsv", valid), "test": write(folder, "test.tsv", test)},
            "model": {"d_model": 16, "encoder": {"name": "gru"}, "decoder": {"name": "gru"}},
            "data": {"batch_tokens": 64, "max_source_len": 8, "max_target_len": 10},  # too_long = "drop"
            "train": {"steps": steps, "lr": 3e-3, "warmup_steps": 1, "eval_every": steps, "log_every": steps}}


@pytest.fixture
def scored(monkeypatch):
    """The references each call of the translation task's metrics() scores, in call order."""
    calls: list[list[str]] = []
    metrics = TranslationTask.metrics

    def recording(self, predictions, references):
        calls.append(list(references))
        return metrics(self, predictions, references)

    monkeypatch.setattr(TranslationTask, "metrics", recording)
    return calls


def test_valid_and_test_metrics_are_computed_over_every_example(tmp_path, scored, one_thread):
    result = seqkit.train(config(tmp_path), out=tmp_path / "run", samples=5)
    valid_calls, test_call = scored[:-1], scored[-1]
    assert valid_calls and all(len(references) == 5 for references in valid_calls)
    assert len(test_call) == 5 and "cbacbacbacba" in test_call  # the full reference, not its truncation
    assert result.test["examples"] == 5 and result.test["truncated"] == 1
    assert "dropped" not in result.test
    model = seqkit.load(tmp_path / "run")
    metrics, shown = model.evaluate("test", samples=5)
    assert [s["reference"] for s in shown] == [line.split("\t")[1] for line in EVAL]
    hits = sum(s["prediction"] == s["reference"] for s in shown)
    assert metrics["exact_match"] == hits / 5  # k of N, not of the N - 1 that fit the limits
    valid = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
             if '"eval"' in line]
    assert valid and all(record["eval"] == "valid" for record in valid)


def test_an_empty_source_is_scored_as_an_empty_prediction(tmp_path, scored, one_thread):
    test = [*EVAL, "\tab"]  # no source token: the model cannot take it, the score must count it
    run = config(tmp_path, valid=["\tab", *EVAL], test=test)
    run["train"]["eval_examples"] = 3  # valid decodes its first 3 examples: the empty one among them
    seqkit.train(run, out=tmp_path / "run", test=False)
    assert scored == [["ab", "ba", "cbacbacbacba"]]
    model = seqkit.load(tmp_path / "run")
    metrics, shown = model.evaluate("test", samples=6)
    assert len(scored[-1]) == 6 and metrics["examples"] == 6 and metrics["empty"] == 1
    assert shown[5] == {"source": "", "reference": "ab", "prediction": ""}
    hits = sum(s["prediction"] == s["reference"] for s in shown)
    assert metrics["exact_match"] == hits / 6


def test_unknown_characters_of_the_test_file_are_counted_and_said(tmp_path, caplog, one_thread):
    test = ["axb\tbxa", "ab\tba", "ba\tab"]  # x never occurs in train: <unk> for the char tokenizer
    seqkit.train(config(tmp_path, test=test), out=tmp_path / "run", test=False)
    model = seqkit.load(tmp_path / "run")
    encoded = encode_split(model.task, "test", model.config.data)
    assert (encoded.stats["source_tokens"], encoded.stats["source_unk"]) == (7, 1)
    assert (encoded.stats["target_tokens"], encoded.stats["target_unk"]) == (7, 1)
    caplog.clear()
    caplog.set_level(logging.WARNING, logger="seqkit")
    metrics, _ = model.evaluate("test")
    assert metrics["source_unk_rate"] == metrics["target_unk_rate"] == 1 / 7
    assert [r.getMessage() for r in caplog.records] == [
        "test: 14% of source tokens (1 of 7) and 14% of target tokens (1 of 7) are <unk>: the "
        "tokenizer fit on train cannot represent them"]


def test_the_command_line_says_the_counts_without_debug(tmp_path, one_thread):
    path = tmp_path / "run.toml"
    run = config(tmp_path)
    lines = [f"seed = {run['seed']}"]
    for table, values in (("task", run["task"]), ("model", {"d_model": 16}),
                          ("model.encoder", {"name": "gru"}), ("model.decoder", {"name": "gru"}),
                          ("data", run["data"]), ("train", run["train"])):
        lines.append(f"[{table}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # in its own process: the command line's log format and level are what a person sees on stderr
    result = subprocess.run([sys.executable, "-m", "seqkit", "run", str(path), "--out", "run"], cwd=tmp_path,
                            capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("seqkit: warning: ")]
    assert warnings == [
        "seqkit: warning: train: 1 of 8 examples dropped as longer than data.max_source_len=8 / "
        "max_target_len=10",
        "seqkit: warning: valid: 1 of 5 examples truncated for the model to data.max_source_len=8 / "
        "max_target_len=10 (scored against their full references)",
        "seqkit: warning: test: 1 of 5 examples truncated for the model to data.max_source_len=8 / "
        "max_target_len=10 (scored against their full references)"]
