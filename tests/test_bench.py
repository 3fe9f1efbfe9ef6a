"""seqkit bench: end to end at tiny sizes, its outputs, FLOP and MFU arithmetic, the raw twins."""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest
import torch

from seqkit.bench import ROW_FIELDS, BenchSettings, build_seqkit, model_config, run_bench
from seqkit.bench.flops import count_flops, mfu
from seqkit.bench.raw import build_raw_model, copy_from_seqkit
from seqkit.bench.steps import Batch
from seqkit.model import count_parameters
from seqkit.plugins import Registration, make_plugin_manager
from seqkit_backends.cpu import CpuBackend
from tests.bench_support import assert_refused, invoke

TINY = ["--d-model", "16", "--layers", "1", "--heads", "2", "--vocab", "24", "--batch-size", "2",
        "--lengths", "3,6", "--warmup", "1", "--repeat", "2", "--threads", "1"]
TINY_SETTINGS = dict(d_model=16, layers=1, heads=2, vocab=24, batch_size=2, lengths=(3, 6),
                     warmup=1, repeat=2, threads=1)
META_FIELDS = {"seqkit", "torch", "python", "backend", "device", "precision", "peak_flops",
               "threads", "compile", "time", "tokens", "peak_memory", "settings"}


@pytest.fixture(scope="module")
def manager():
    return make_plugin_manager()


# -- end to end -----------------------------------------------------------------------------------


def test_every_mode_end_to_end_with_json_csv_and_plot(tmp_path):
    paths = {kind: tmp_path / f"bench.{kind}" for kind in ("json", "csv", "png")}
    result = invoke(*TINY, "--arch", "lstm,transformer", "--mode", "train,encode,generate",
                    "--baseline", "raw", "--generate-batch", "1,2",
                    "--json", str(paths["json"]), "--csv", str(paths["csv"]),
                    "--plot", str(paths["png"]))
    assert result.exit_code == 0, result.output
    assert "ratio: seqkit / raw PyTorch" in result.stdout and "cached greedy / recompute" in result.stdout
    assert "bench [" in result.stderr  # the progress indicator

    data = json.loads(paths["json"].read_text())
    assert set(data["meta"]) == META_FIELDS and data["meta"]["threads"] == 1
    assert data["meta"]["peak_flops"] is None  # CPU: no made-up peak
    rows = data["rows"]
    assert all(set(row) == set(ROW_FIELDS) for row in rows)
    timed = [row for row in rows if row["mode"] in ("train", "encode")]
    # 2 architectures x 2 timed modes x 2 lengths x (seqkit, raw)
    assert len(timed) == 2 * 2 * 2 * 2 and all(row["status"] == "ok" for row in timed)
    for row in timed:
        assert row["repetitions"] == 2 and row["tokens_per_s"] > 0 and row["flops_per_step"] > 0
        assert row["tokens_per_s_min"] <= row["tokens_per_s"] <= row["tokens_per_s_max"]
        assert row["ms_per_step_min"] <= row["ms_per_step"] <= row["ms_per_step_max"]
        assert row["mfu"] is None and row["peak_memory_bytes"] > 0
        assert row["batch_size"] == (1 if row["mode"] == "encode" else 2)
        twin = next(r for r in timed if r["implementation"] != row["implementation"]
                    and all(r[k] == row[k] for k in ("architecture", "mode", "length")))
        assert twin["parameters"] == row["parameters"]  # same-shaped models
        assert twin["flops_per_step"] == row["flops_per_step"]
        if row["implementation"] == "seqkit":
            assert row["ratio_vs_baseline"] == pytest.approx(
                row["tokens_per_s"] / twin["tokens_per_s"])
    generated = [row for row in rows if row["mode"] == "generate"]
    assert [(r["architecture"], r["length"], r["batch_size"], r["implementation"]) for r in generated] == [
        (arch, length, batch, impl) for arch in ("lstm", "transformer") for length in (3, 6)
        for batch in (1, 2) for impl in ("seqkit", "recompute", "beam4")]
    for row in generated:  # exactly `length` new tokens per row and step
        assert row["status"] == "ok" and row["flops_per_step"] > 0
        tokens = row["tokens_per_s"] * row["ms_per_step"] / 1e3
        assert round(tokens) == row["length"] * row["batch_size"]
        baseline = {"seqkit": "recompute", "beam4": "seqkit"}.get(row["implementation"])
        if baseline is None:
            assert row["ratio_vs_baseline"] is None
            continue
        twin = next(r for r in generated if r["implementation"] == baseline
                    and all(r[k] == row[k] for k in ("architecture", "length", "batch_size")))
        assert row["ratio_vs_baseline"] == pytest.approx(row["tokens_per_s"] / twin["tokens_per_s"])
    assert len(rows) == len(timed) + len(generated)

    with paths["csv"].open() as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == len(rows) and set(ROW_FIELDS) <= set(lines[0])
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mixed_pair_and_token_budget(manager):
    settings = BenchSettings(**{**TINY_SETTINGS, "batch_size": None, "batch_tokens": 12},
                             architectures=("lstm+transformer",), modes=("train",))
    rows = run_bench(settings, manager).rows
    assert [(r.length, r.batch_size, r.status) for r in rows] == [(3, 4, "ok"), (6, 2, "ok")]


def test_out_of_memory_at_one_size_is_that_rows_status(manager, monkeypatch):
    import seqkit.bench.runner as bench_module

    real_train_step = bench_module.train_step

    def train_step(model, forward, batch, *args):
        step = real_train_step(model, forward, batch, *args)
        if batch.source.shape[1] != 6:
            return step

        def out_of_memory():
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

        return out_of_memory

    monkeypatch.setattr(bench_module, "train_step", train_step)
    settings = BenchSettings(**TINY_SETTINGS, architectures=("gru",), modes=("train",))
    rows = {row.length: row for row in run_bench(settings, manager).rows}
    assert rows[3].status == "ok" and rows[3].tokens_per_s > 0
    assert rows[6].status == "out of memory" and rows[6].tokens_per_s is None


# -- bad input: one line, exit status 2 ------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--arch", "lsmt"], "unknown architecture 'lsmt'"),
    (["--arch", "transformer", "--set", "model.encoder.positions=learned",
      "--set", "model.encoder.max_positions=4"], "transformer cannot take length 6"),
    (["--lengths", "0"], "--lengths: need lengths >= 1"),
    (["--backend", "cuda"] if not torch.cuda.is_available() else ["--backend", "nope"],
     "backend"),
    (["--mode", "sample"], "unknown mode 'sample'"),
    (["--arch", "gru+lstm", "--baseline", "raw"], "no raw PyTorch twin of the mixed pair"),
])
def test_bad_input_is_one_line_and_exit_status_2(args, message):
    result = invoke(*TINY, *args)
    assert_refused(result, message)


# -- FLOPs and MFU --------------------------------------------------------------------------------


def test_mfu_of_a_single_linear_layer_matches_a_hand_count():
    batch, d_in, d_out = 8, 32, 64
    layer = torch.nn.Linear(d_in, d_out)
    x = torch.randn(batch, d_in, requires_grad=True)
    flops = count_flops(lambda: layer(x).sum().backward())
    # forward x W^T: 2*N*I*O; backward: grad of x (2*N*I*O) and grad of W (2*N*I*O)
    assert flops == 3 * 2 * batch * d_in * d_out
    assert mfu(flops, 0.002, 1e12) == pytest.approx(flops / 0.002 / 1e12)
    assert mfu(flops, 0.002, None) is None


class PeakCpu(CpuBackend):
    """The CPU with a peak FLOP/s figure, so that rows get an MFU."""

    name = "peakcpu"
    priority = 100

    def peak_flops(self, precision):
        return 1e12


def test_rows_mfu_is_flops_over_time_over_peak(manager):
    fake = Registration("backend", "peakcpu", PeakCpu, None, "test", None, None)
    with_peak = type(manager).from_registrations(
        [*(r for kind in ("encoder", "decoder") for r in manager.registrations(kind)), fake])
    settings = BenchSettings(**TINY_SETTINGS, architectures=("rnn",), modes=("train",),
                             backend="peakcpu")
    result = run_bench(settings, with_peak)
    assert result.meta["peak_flops"] == 1e12
    for row in result.rows:
        assert row.mfu == pytest.approx(row.flops_per_step / (row.ms_per_step / 1e3) / 1e12)


def test_lstm_flops_match_a_hand_count():
    steps, batch, d_in, hidden = 5, 3, 8, 16
    lstm = torch.nn.LSTM(d_in, hidden, batch_first=True)
    x = torch.randn(batch, steps, d_in)
    with torch.no_grad():
        flops = count_flops(lambda: lstm(x))
    assert flops == 2 * steps * batch * (4 * hidden * d_in + 4 * hidden * hidden)


# -- the raw twins --------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["rnn", "lstm", "gru", "transformer"])
def test_raw_twin_has_the_same_parameters_and_logits(arch, manager):
    settings = BenchSettings(**TINY_SETTINGS)
    config = model_config(arch, settings, manager)
    model = build_seqkit(config, settings, manager).eval()
    raw = build_raw_model(config, settings.vocab).eval()
    copy_from_seqkit(raw, model)
    assert count_parameters(raw) == count_parameters(model)
    batch = Batch.random(3, 5, settings.vocab, torch.device("cpu"), torch.Generator().manual_seed(1))
    mask = batch.mask.clone()
    mask[1, 3:] = False  # padding, too: both mask it the same way
    with torch.no_grad():
        for source_mask in (batch.mask, mask):
            torch.testing.assert_close(raw(batch.source, source_mask, batch.target),
                                       model(batch.source, source_mask, batch.target),
                                       atol=1e-5, rtol=1e-5)


def test_settings_and_rows_are_plain_data():
    settings = BenchSettings()
    assert dataclasses.asdict(settings)["architectures"] == ("rnn", "lstm", "gru", "transformer")
    assert json.dumps(dataclasses.asdict(settings))
