"""`seqkit eval` shows metrics rounded for reading: 6 significant digits, integers as integers,
and a value that is not finite as null (JSON) or nan/inf (text), never float noise."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

import seqkit
from seqkit.cli import cli

PAIRS = "".join(f"{w}\t{w[::-1]}\n" for w in ["ab", "abc", "ba", "cab", "bca"] * 4)
NOISY = {"loss": 4.890073893100793, "ppl": 132.96339876611586, "exact_match": 0.30000000000000004,
         "bleu": 100.00000000000004, "chrf": 1e-7 / 3, "examples": 8, "nan_metric": math.nan,
         "inf_metric": -math.inf}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    (root / "train.tsv").write_text(PAIRS)
    config = {"seed": 0, "task": {"name": "translation", "train": str(root / "train.tsv"),
                                  "test": str(root / "train.tsv"), "tokenizer": "char"},
              "model": {"d_model": 8, "encoder": {"name": "gru"}, "decoder": {"name": "gru"}},
              "train": {"steps": 1, "eval_every": 1, "warmup_steps": 1}}
    seqkit.train(config, out=root / "run", test=False)
    return root / "run"


@pytest.fixture
def noisy(monkeypatch):
    from seqkit.api import Model

    monkeypatch.setattr(Model, "evaluate", lambda self, split="test", samples=0: (dict(NOISY), []))


def test_json_metrics_have_six_significant_digits(run, noisy):
    result = CliRunner().invoke(cli, ["eval", str(run), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "loss": 4.89007, "ppl": 132.963, "exact_match": 0.3, "bleu": 100.0, "chrf": 3.33333e-08,
        "examples": 8, "nan_metric": None, "inf_metric": None}
    assert '"examples": 8,' in result.stdout  # an integer stays one
    assert "0000000" not in result.stdout and "NaN" not in result.stdout


def test_text_metrics_read_the_same(run, noisy):
    result = CliRunner().invoke(cli, ["eval", str(run)])
    assert result.exit_code == 0, result.output
    rows = dict(line.split() for line in result.stdout.splitlines())
    assert rows == {"loss": "4.89007", "ppl": "132.963", "exact_match": "0.3", "bleu": "100",
                    "chrf": "3.33333e-08", "examples": "8", "nan_metric": "nan", "inf_metric": "-inf"}


def test_real_metrics_are_rounded(run):
    result = CliRunner().invoke(cli, ["eval", str(run), "--json"])
    assert result.exit_code == 0, result.output
    for key, value in json.loads(result.stdout).items():
        assert value is None or float(f"{value:.6g}") == value, (key, value)
