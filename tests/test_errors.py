"""Bad input is one line: exit status 2 and one `seqkit: error:` line naming where, through the
CLI; a SeqkitError subclass (never KeyError, TypeError, ...) through the API."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import seqkit
from seqkit import checkpoint as ckpt
from seqkit.cli import cli
from seqkit.errors import CheckpointError, SeqkitError
from seqkit.run_folder import RunFolder

PAIRS = "".join(f"{a} {b}\t{b} {a}\n" for a in "abcdefg" for b in "hijk")


def tiny(root: Path) -> dict:
    (root / "train.tsv").write_text(PAIRS)
    (root / "test.tsv").write_text(PAIRS[:40])
    return {"seed": 0,
            "task": {"name": "translation", "train": str(root / "train.tsv"), "valid": str(root / "test.tsv"),
                     "test": str(root / "test.tsv"), "tokenizer": "char"},
            "model": {"d_model": 16, "encoder": {"name": "gru"}, "decoder": {"name": "gru"}},
            "train": {"steps": 2, "eval_every": 2, "warmup_steps": 1}}


def cli_error(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seqkit: error: "), result.stderr
    assert "Traceback" not in result.output and "Usage:" not in result.output
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread) -> Path:
    root = tmp_path_factory.mktemp("trained")
    seqkit.train(tiny(root), out=root / "run", test=False)
    return root / "run"


# -- CLI: where things are not ------------------------------------------------------------------


def test_a_missing_run_folder_is_one_line(tmp_path):
    missing = str(tmp_path / "runs" / "x")
    assert cli_error("eval", missing) == f"seqkit: error: {missing}: no such run folder or checkpoint"
    assert cli_error("plot", missing) == f"seqkit: error: {missing}: no such run folder"


def test_plot_of_a_file_and_into_a_missing_folder(tmp_path, trained):
    config = tmp_path / "run.toml"
    config.write_text("seed = 1\n")
    assert "not a run folder" in cli_error("plot", str(config))
    out = tmp_path / "nowhere" / "curves.png"
    line = cli_error("plot", str(trained), "-o", str(out))
    assert str(out) in line and "does not exist" in line
    assert not out.parent.exists()


def test_eval_of_a_config_file_says_it_is_a_config(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('seed = 1\n[task]\nname = "copy"\n')
    line = cli_error("eval", str(config))
    assert str(config) in line and "config file, not a run folder or checkpoint" in line
    with pytest.raises(CheckpointError, match="config file"):
        seqkit.load(config)


def test_eval_json_is_json_even_with_non_finite_values(trained, monkeypatch):
    from seqkit.api import Model

    monkeypatch.setattr(Model, "evaluate", lambda self, split="test", samples=0: (
        {"loss": math.nan, "ppl": math.inf, "exact_match": 100.00000000000004, "examples": 8}, []))
    result = CliRunner().invoke(cli, ["eval", str(trained), "--json"])
    assert result.exit_code == 0, result.output
    assert "NaN" not in result.stdout and "Infinity" not in result.stdout
    assert json.loads(result.stdout) == {"loss": None, "ppl": None, "exact_match": 100.0, "examples": 8}


def test_eval_on_a_non_utf8_data_file_names_file_and_line(tmp_path, trained):
    data = tmp_path / "bad.tsv"
    data.write_bytes(b"a h\th a\nb \xff\ti\n")
    line = cli_error("eval", str(trained), "--data", str(data), "--split", "test")
    assert f"{data}:2" in line


# -- the API on damaged metadata ----------------------------------------------------------------


def _rewrite(path: Path, out: Path, change) -> Path:
    """``path`` rewritten with its seqkit metadata changed by ``change`` (a valid checksum)."""
    tensors, meta = ckpt.load_tensors(path)
    tensors = {k: v.clone() for k, v in tensors.items()}
    ckpt.save_tensors(out, tensors, change(json.loads(json.dumps(meta))))
    return out


def _set(meta, keys, value):
    target = meta
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value
    return meta


def _drop(meta, keys):
    target = meta
    for key in keys[:-1]:
        target = target[key]
    del target[keys[-1]]
    return meta


def _paths(value, prefix=()):
    """Every key path into a JSON value (dicts only)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from _paths(item, (*prefix, key))


WRONG = [None, 0, -1, 1.5, "x", "", [], {}, [1, "a"], {"a": 1}, True, 2**70]


def test_load_on_damaged_metadata_raises_checkpoint_errors(tmp_path, trained):
    best = RunFolder(trained).best
    _, meta = ckpt.load_tensors(best)
    changes = [lambda m: {}, lambda m: [], lambda m: {**m, "config": "[[[ not toml"},
               lambda m: {**m, "config": 'seed = "x"'}, lambda m: {**m, "config": "[model]\nlayerz = 1"},
               lambda m: {**m, "config": m["config"].replace("translation", "no-such-task")},
               lambda m: {**m, "config": m["config"].replace("gru", "transformer")},
               lambda m: {**m, "config": m["config"].replace('"char"', '"bpe"')},
               lambda m: {**m, "config": m["config"].replace("d_model = ", "d_model = 1")},  # shapes
               lambda m: {**m, "task_state": "tokenizer"}, lambda m: {**m, "task_state": None}]
    rng = random.Random(0)
    for path in _paths(meta):
        changes.append(lambda m, path=path: _drop(m, path))
        for value in rng.sample(WRONG, 3):
            changes.append(lambda m, path=path, value=value: _set(m, path, value))
    out = tmp_path / "damaged.safetensors"
    for change in changes:
        try:
            damaged = _rewrite(best, out, change)
        except (TypeError, ValueError):  # not representable as metadata
            continue
        try:
            seqkit.load(damaged)
        except CheckpointError as exc:
            message = str(exc)
            assert "\n" not in message and str(damaged) in message, message
        except SeqkitError as exc:  # e.g. a needed plugin: still seqkit's own, one line
            assert "\n" not in str(exc)


def test_load_of_a_missing_path(tmp_path):
    with pytest.raises(CheckpointError, match="no such run folder or checkpoint"):
        seqkit.load(tmp_path / "none")


# -- memory ------------------------------------------------------------------------------------


def _anonymous_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    pytest.skip("no /proc/self/status")


def test_loading_maps_the_file_instead_of_copying_it(tmp_path):
    path = tmp_path / "big.safetensors"
    ckpt.save_tensors(path, {"w": torch.ones(64, 1 << 18)}, {"format_version": 1})  # 64 MiB
    before = _anonymous_rss()
    tensors, _ = ckpt.load_tensors(path)
    grown = _anonymous_rss() - before
    assert float(tensors["w"][-1, -1]) == 1.0
    assert grown < 16 << 20, f"{grown >> 20} MiB of anonymous memory for a 64 MiB file"


def test_pipes_and_devices_are_refused_before_opening_them(tmp_path):
    """Opening a pipe waits for a writer (a hang) and a device can be endless: every verb that
    reads a file the user names checks what it is first."""
    import os

    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    for args, what in ((["eval", str(pipe)], "not a checkpoint file"),
                       (["generate", str(pipe), "x"], "not a checkpoint file"),
                       (["average", str(pipe), "-o", str(tmp_path / "a.st")], "not a checkpoint file"),
                       (["config", "check", str(pipe)], "not a config file"),
                       (["eval", "/dev/zero"], "not a checkpoint file")):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, (args, result.output)
        assert "a device, pipe or socket, " + what in result.stderr, result.stderr
