"""The example plugin passes seqkit's conformance suite, glr's parallel scan is its recurrence, and the
vowels task trains through seqkit.train and is evaluated on a --data file."""

import json
import subprocess
import sys

import pytest
import seqkit
import torch
from click.testing import CliRunner
from seqkit import ConfigError, make_plugin_manager
from seqkit.cli import cli
from seqkit.testing import run_conformance

from seqkit_example.conv import ConvEncoder, ConvEncoderConfig
from seqkit_example.glr import GLRDecoder, GLRDecoderConfig, gated_recurrence
from seqkit_example.options import VowelsConfig
from seqkit_example.vowels import VowelsTask


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The models here are tiny: with several OpenMP threads on a busy machine, threads wait on
    each other far longer than they compute (the suite ran 10-100x slower in our runs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_conformance():
    manager = make_plugin_manager()
    info = manager.plugins.get("seqkit_example")
    assert info is not None and info.status == "ok", "seqkit_example is not installed or broken"
    assert info.registered["encoder"] == ["conv"] and info.registered["decoder"] == ["glr"]
    assert info.registered["task"] == ["vowels"] and info.registered["backend"] == ["plain_cpu"]
    outcomes = run_conformance(manager, "seqkit_example")
    failed = [f"{o.check.subject}: {o.check.name}: {o.detail}" for o in outcomes if o.status == "failed"]
    assert outcomes and not failed, "\n".join(failed)
    checked = {o.check.subject for o in outcomes if o.status == "passed"}
    assert {"task vowels", "backend plain_cpu"} <= checked


def test_importing_the_plugin_imports_no_torch():
    """seqkit imports the plugin to list commands (`seqkit --help`): it must stay light."""
    code = "import sys, seqkit_example; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def vowels_config(tmp_path, **train):
    return {
        "seed": 0,
        "backend": "plain_cpu",
        "task": {"name": "vowels", "train_size": 400, "valid_size": 60, "test_size": 60, "max_len": 5},
        "model": {"d_model": 32, "encoder": {"name": "conv", "layers": 2, "dropout": 0.0}},
        "data": {"batch_tokens": 256},
        "train": {"steps": 60, "lr": 3e-3, "warmup_steps": 5, "eval_every": 10, "log_every": 10,
                  "best_metric": "error_rate", **train},
    }


def evaluations(run):
    """(step, valid error_rate) of each evaluation in the run's metrics.jsonl."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(row["step"], row["error_rate"]) for row in rows if "error_rate" in row]


def test_vowels_trains_and_keeps_the_lowest_error_rate(tmp_path):
    result = seqkit.train(vowels_config(tmp_path), out=tmp_path / "run", test=True, progress=False)
    history = evaluations(tmp_path / "run")
    assert len(history) >= 5
    lowest = min(rate for _, rate in history)
    assert result.summary["best"] == {"error_rate": lowest}  # error_rate: lower is better
    assert history[0][1] > lowest  # it learned something, so keeping the last or highest would differ
    assert "error_rate" in result.test


def test_eval_reads_a_data_file_in_the_tasks_format(tmp_path):
    seqkit.train(vowels_config(tmp_path, steps=10), out=tmp_path / "run", test=False, progress=False)
    data = tmp_path / "words.tsv"
    data.write_text("banana\t3\nsky\t0\n")
    result = CliRunner().invoke(cli, ["eval", str(tmp_path / "run"), "--data", str(data), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["examples"] == 2 and 0 <= metrics["error_rate"] <= 1


def test_a_malformed_data_line_is_one_error_naming_file_and_line(tmp_path):
    seqkit.train(vowels_config(tmp_path, steps=2), out=tmp_path / "run", test=False, progress=False)
    data = tmp_path / "bad.tsv"
    data.write_text("banana\t3\nsky zero\n")
    result = CliRunner().invoke(cli, ["eval", str(tmp_path / "run"), "--data", str(data)])
    assert result.exit_code == 2
    assert f"{data}:2: expected word<TAB>count" in result.stderr


def test_the_vowels_task_draws_from_its_own_seed():
    task = VowelsTask(VowelsConfig(train_size=5, seed=3))
    torch.manual_seed(0)
    first = [e.source for e in task.examples("train")]
    torch.manual_seed(1)
    assert [e.source for e in task.examples("train")] == first
    assert [e.source for e in VowelsTask(VowelsConfig(train_size=5, seed=4)).examples("train")] != first


def naive_recurrence(gate_logits, values, state):
    """h_t = a_t * h_{t-1} + (1 - a_t) * u_t, one step at a time."""
    a, outputs = torch.sigmoid(gate_logits), []
    for t in range(values.size(1)):
        state = a[:, t] * state + (1 - a[:, t]) * values[:, t]
        outputs.append(state)
    return torch.stack(outputs, dim=1)


@pytest.mark.parametrize("length", [1, 2, 5, 64, 1000])
def test_scan_equals_a_loop_over_time(length):
    generator = torch.Generator().manual_seed(length)
    # gate logits up to +-12: decays from ~0 to ~1, where a log-space cumulative sum loses precision
    gate_logits = 4 * torch.randn(3, length, 8, generator=generator)
    values, state = 3 * torch.randn(3, length, 8, generator=generator), torch.randn(3, 8, generator=generator)
    expected = naive_recurrence(gate_logits.double(), values.double(), state.double())
    torch.testing.assert_close(gated_recurrence(gate_logits, values, state).double(), expected,
                               atol=1e-5, rtol=1e-5)


def test_decoder_full_pass_equals_step_by_step():
    """Decoding one position at a time runs the recurrence formula itself (no scan)."""
    torch.manual_seed(0)
    decoder = GLRDecoder(GLRDecoderConfig(layers=2, dropout=0.0), d_model=16).eval()
    y = torch.randn(2, 50, 16)
    with torch.no_grad():
        full, _ = decoder(y, None)
        cache, steps = decoder.init_cache(None, 2, 50), []
        for t in range(50):
            hidden, cache = decoder(y[:, t:t + 1], None, cache)
            steps.append(hidden)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("factory, config_class, key, value", [
    (ConvEncoder, ConvEncoderConfig, "kernel_size", 4),
    (ConvEncoder, ConvEncoderConfig, "activation", "relu"),
    (ConvEncoder, ConvEncoderConfig, "layers", 0),
    (GLRDecoder, GLRDecoderConfig, "dropout", 1.0),
    (GLRDecoder, GLRDecoderConfig, "layers", True),
])
def test_invalid_options_name_their_key(factory, config_class, key, value):
    with pytest.raises(ConfigError) as error:
        config_class(**{key: value})
    assert error.value.key == key
    config = config_class()
    setattr(config, key, value)  # the factory checks too: a config can change after it is made
    with pytest.raises(ConfigError) as error:
        factory(config, 16)
    assert error.value.key == key
