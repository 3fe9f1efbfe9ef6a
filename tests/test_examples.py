"""The shipped examples: every run file validates, and the seed examples run at a tiny budget."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

import seqkit
from seqkit.cli import cli

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"



@pytest.mark.parametrize("config", sorted(EXAMPLES.glob("*.toml")), ids=lambda path: path.name)
def test_example_config_checks(config):
    result = CliRunner().invoke(cli, ["config", "check", str(config)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{config}: ok"


def test_seed_regression_data_is_the_literal_setup():
    import numpy as np

    shapes = {"train": 1000, "valid": 200, "test": 200}
    for split, n in shapes.items():
        with np.load(EXAMPLES / "data" / f"seed_regression.{split}.npz", allow_pickle=False) as data:
            assert data["inputs"].shape == (n, 4, 10)
            assert data["targets"].shape == (n, 1)


def test_seed_regression_trains(tmp_path, one_thread):
    result = seqkit.train(EXAMPLES / "seed_regression.toml", out=tmp_path / "run",
                          overrides=["train.steps=3", "train.eval_every=3", "train.log_every=1",
                                     "train.warmup_steps=1"], samples=1)
    assert result.summary["step"] == 3
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "eval" not in r]
    valid = [r for r in records if r.get("eval") == "valid"]
    assert [r["step"] for r in train] == [1, 2, 3]
    assert len(valid) == 1
    assert all(math.isfinite(r["loss"]) for r in train + valid)
    assert {"mse", "mae", "r2"} <= set(valid[0])
    assert result.test["examples"] == 200
    assert all(math.isfinite(result.test[k]) for k in ("loss", "mse", "mae", "r2"))


def _seed_experiment():
    spec = importlib.util.spec_from_file_location("seed_experiment", EXAMPLES / "seed_experiment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seed_experiment_runs_end_to_end(tmp_path, one_thread):
    experiment = _seed_experiment()
    rows = experiment.main(["--steps", "2", "--batch-tokens", "128", "--limit", "16", "--layers", "1",
                            "--eval-examples", "4", "--out", str(tmp_path), "--quiet"])
    assert [row["architecture"] for row in rows] == ["rnn", "lstm", "gru", "transformer"]
    for row in rows:
        assert "diverged" not in row
        assert row["parameters"] > 0
        assert len(row["train_loss_per_step"]) == 2
        for key in ("final_train_loss", "valid_loss", "test_exact_match", "test_bleu", "test_chrf",
                    "wall_time_s", "train_tokens_per_s"):
            assert math.isfinite(row[key]), key
        assert row["test_examples"] == 16
        assert row["encoder"]["layers"] == row["decoder"]["layers"] == 1
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["settings"]["steps"] == 2
    assert [row["architecture"] for row in saved["results"]] == ["rnn", "lstm", "gru", "transformer"]
    table = (tmp_path / "results.md").read_text()
    assert table.startswith("| architecture | parameters | final train loss | valid loss |")
    assert len([line for line in table.splitlines() if line.startswith("| ")]) == 2 + 4
    assert (tmp_path / "loss_curves.png").stat().st_size > 0
    for arch in ("rnn", "lstm", "gru", "transformer"):
        assert (tmp_path / arch / "metrics.jsonl").exists()


def test_scale_benchmark_runs_end_to_end(tmp_path):
    """examples/scale_bench.py, the source of the README's scale table, at a tiny size: prepare,
    a second start in one process and in two (torchrun), and its table."""
    spec = importlib.util.spec_from_file_location("scale_bench", EXAMPLES / "scale_bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(["--sizes", "300", "--out", str(tmp_path)])
    row = rows[0]
    assert row["pairs"] == 300 and row["prepare_s"] > 0 and row["prepare_rss"] > 0 and row["disk_bytes"] > 0
    assert row["first_step"]["seconds"] > 0 and row["first_step"]["pss"] > 0
    assert sorted(r["rank"] for r in row["two_processes"]) == [0, 1]
    lines = (tmp_path / "300" / "train.tsv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 300 and all(line.count("\t") == 1 for line in lines)
    assert bench.table(rows).splitlines()[2].startswith("| 300 | 0 MB | ")
