"""`seqkit cache list` and `seqkit cache clean`: the cache of prepared data, seen and pruned."""

from __future__ import annotations

import json
import os
import time

from click.testing import CliRunner

import seqkit
from seqkit.cli import cli

DAY = 86400


def config(tmp_path, name, pairs):
    data = tmp_path / f"{name}.tsv"
    data.write_text("".join(f"{w}\t{w[::-1]}\n" for w in pairs), encoding="utf-8")
    return {"task": {"name": "translation", "train": str(data), "tokenizer": "char"},
            "model": {"d_model": 8, "encoder": {"name": "gru"}, "decoder": {"name": "gru"}}}


def listed():
    result = CliRunner().invoke(cli, ["cache", "list", "--json"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


def age(entry, days):
    old = time.time() - days * DAY
    os.utime(os.path.join(entry["folder"], "task_state.json"), (old, old))


def test_list_names_each_folders_task_files_and_size(tmp_path):
    old, new = config(tmp_path, "old", ["ab", "abc"] * 5), config(tmp_path, "new", ["xy", "xyz"] * 5)
    seqkit.prepare(old)
    seqkit.prepare(new)
    entries = listed()
    assert sorted(e["files"]["train"] for e in entries) == sorted(c["task"]["train"] for c in (old, new))
    assert all(e["task"] == "translation" and e["bytes"] > 0 and e["encodings"] == 1 for e in entries)
    text = CliRunner().invoke(cli, ["cache", "list"]).output.splitlines()
    assert len(text) == 3 and text[-1].endswith("MiB") and "2 folders" in text[-1]
    assert any(old["task"]["train"] in line and "used 0.0 hours ago" in line for line in text)


def test_clean_removes_what_no_run_has_used_and_a_start_counts_as_use(tmp_path):
    old, new = config(tmp_path, "old", ["ab", "abc"] * 5), config(tmp_path, "new", ["xy", "xyz"] * 5)
    seqkit.prepare(old)
    seqkit.prepare(new)
    for entry in listed():
        age(entry, 40)
    seqkit.prepare(new)  # a start over the same data: the folder is used again, not prepared again
    assert [e["files"]["train"] for e in listed()] == [old["task"]["train"], new["task"]["train"]]
    dry = CliRunner().invoke(cli, ["cache", "clean", "--unused-days", "30", "--dry-run"])
    assert dry.exit_code == 0 and "would remove 1 folder" in dry.output and len(listed()) == 2
    result = CliRunner().invoke(cli, ["cache", "clean", "--unused-days", "30"])
    assert result.exit_code == 0 and "removed 1 folder" in result.output, result.output
    assert [e["files"]["train"] for e in listed()] == [new["task"]["train"]]
    assert len(seqkit.prepare(old)) == 10  # prepared again when needed
    everything = CliRunner().invoke(cli, ["cache", "clean", "--all"])
    assert everything.exit_code == 0 and "removed 2 folders" in everything.output and listed() == []


def test_clean_needs_one_rule():
    for args in (["cache", "clean"], ["cache", "clean", "--all", "--unused-days", "3"],
                 ["cache", "clean", "--unused-days", "-1"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, (args, result.output)
