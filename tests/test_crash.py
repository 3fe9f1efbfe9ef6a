"""Crash safety: kill -9 at any moment loses no saved checkpoint, a resumed run ends bit for bit where
an uninterrupted one does, and a damaged file is a one-line error before anything large is
allocated."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import seqkit
from seqkit import checkpoint as ckpt
from seqkit.cli import cli
from seqkit.errors import CheckpointError
from seqkit.run_folder import RunFolder

ROOT = Path(__file__).resolve().parent.parent

# Runs seqkit.train in a child process; with PAUSE_AT set, the write of that file stops after its
# temporary file is complete and before the rename, so a test can kill the process right there.
DRIVER = """
import json, os, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
import seqkit

config, out = json.loads(sys.argv[1]), Path(sys.argv[2])
pause_at = os.environ.get("PAUSE_AT")
if pause_at:
    rename = os.replace
    def replace(source, target):
        if Path(target).name == pause_at:
            (out / "paused").write_text(str(source))
            time.sleep(600)
        rename(source, target)
    os.replace = replace
seqkit.train(config, out=out, test=False)
"""


STEPS = 24


def tiny(steps=STEPS):
    """Small enough to train in a second or two, with dropout on so RNG state matters."""
    return {
        "seed": 5,
        "task": {"name": "reverse", "symbols": 6, "min_len": 2, "max_len": 5, "train_size": 64,
                 "valid_size": 8, "test_size": 0},
        "model": {"d_model": 16, "embedding_dropout": 0.1, "encoder": {"name": "gru", "dropout": 0.1},
                  "decoder": {"name": "transformer", "layers": 1, "heads": 2, "dropout": 0.1}},
        "data": {"batch_tokens": 48, "max_source_len": 8, "max_target_len": 8},
        "train": {"steps": steps, "lr": 3e-3, "warmup_steps": 2, "eval_every": 4, "log_every": 1,
                  "keep_last": 2},
    }



def start(config, out: Path, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(config), str(out)],
                            env={**os.environ, "OMP_NUM_THREADS": "1", **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for(condition, child: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if child.poll() is not None:
            raise AssertionError(f"the training process ended first: {child.stderr.read().decode()}")
        if time.monotonic() > deadline:
            child.kill()
            raise AssertionError("timed out waiting for the training process")
        time.sleep(0.02)


def kill(child: subprocess.Popen) -> None:
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL
    child.stderr.close()


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    return ckpt.load_tensors(RunFolder(run).latest_checkpoint())[0]


def assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def assert_logged_once(run: Path, steps: int) -> None:
    records = [r for r in RunFolder(run).read_metrics() if "eval" not in r]
    assert [r["step"] for r in records] == list(range(1, steps + 1))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, one_thread):
    run = tmp_path_factory.mktemp("straight")
    seqkit.train(tiny(), out=run, test=False)
    return final_weights(run)


def test_kill_9_mid_run_then_resume_is_bitwise_equal(tmp_path, uninterrupted):
    run = tmp_path / "killed"
    child = start(tiny(), run)
    wait_for(lambda: RunFolder(run).latest_checkpoint() is not None, child)
    kill(child)  # anywhere after the first checkpoint: in a step, an evaluation or a write
    killed_at = RunFolder(run).latest_checkpoint()
    assert killed_at is not None and killed_at != RunFolder(run).checkpoint_path(STEPS)
    seqkit.train(tiny(), out=run, test=False)
    assert_bitwise_equal(final_weights(run), uninterrupted)
    assert_logged_once(run, STEPS)


def test_kill_during_a_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, uninterrupted):
    run = tmp_path / "killed"
    folder = RunFolder(run)
    child = start(tiny(), run, PAUSE_AT="step-0000008.safetensors")
    wait_for(lambda: (run / "paused").exists(), child)
    kill(child)  # the trainer file of step 8 is complete, its model file only a temporary file
    temporary = Path((run / "paused").read_text())
    assert temporary.exists() and temporary.stat().st_size > 0
    assert not folder.checkpoint_path(8).exists()
    previous = folder.latest_checkpoint()
    assert previous == folder.checkpoint_path(4)
    assert ckpt.load_tensors(previous)[1]["step"] == 4
    seqkit.load(previous)  # loadable as a model too

    seqkit.train(tiny(), out=run, test=False)
    assert not temporary.exists()  # the resumed run cleaned up after the crash
    assert_bitwise_equal(final_weights(run), uninterrupted)
    assert_logged_once(run, STEPS)


# -- damaged files ------------------------------------------------------------------------------


def small_file(tmp_path: Path) -> Path:
    path = tmp_path / "small.safetensors"
    ckpt.save_tensors(path, {"weight": torch.arange(12.0).reshape(3, 4), "ids": torch.arange(3)},
                      {"format_version": 1, "note": "x"})
    return path


def load_error(path: Path) -> str:
    """The CheckpointError loading ``path`` gives, checked to be one line."""
    with pytest.raises(CheckpointError) as info:
        ckpt.load_tensors(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


def test_a_truncated_file_is_a_one_line_error(tmp_path):
    data = small_file(tmp_path).read_bytes()
    damaged = tmp_path / "truncated.safetensors"
    for size in (0, 5, 8, 20, len(data) // 2, len(data) - 1):
        damaged.write_bytes(data[:size])
        load_error(damaged)


def test_every_flipped_bit_is_a_one_line_error(tmp_path):
    data = bytearray(small_file(tmp_path).read_bytes())
    damaged = tmp_path / "flipped.safetensors"
    for position in range(len(data)):  # header, metadata and tensor bytes alike
        flipped = bytearray(data)
        flipped[position] ^= 1 << (position % 8)
        damaged.write_bytes(flipped)
        load_error(damaged)


def test_a_flipped_bit_in_a_real_checkpoint_is_caught(tmp_path, one_thread):
    seqkit.train(tiny(steps=4), out=tmp_path / "run", test=False)
    path = RunFolder(tmp_path / "run").latest_checkpoint()
    data = path.read_bytes()
    header = 8 + int.from_bytes(data[:8], "little")
    for position in (12, header // 2, header - 2, header + 5, (header + len(data)) // 2, len(data) - 1):
        flipped = bytearray(data)
        flipped[position] ^= 0x10
        damaged = tmp_path / "damaged.safetensors"
        damaged.write_bytes(flipped)
        load_error(damaged)


def absurd_files(tmp_path: Path) -> list[Path]:
    """A length prefix claiming 2**62 header bytes, and a header whose tensor claims 1 TiB."""
    huge_header = tmp_path / "huge-header.safetensors"
    huge_header.write_bytes((2**62).to_bytes(8, "little") + b"{}")
    header = json.dumps({"w": {"dtype": "U8", "shape": [2**40], "data_offsets": [0, 2**40]}}).encode()
    huge_tensor = tmp_path / "huge-tensor.safetensors"
    huge_tensor.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 64)
    return [huge_header, huge_tensor]


def test_a_header_claiming_an_absurd_size_fails_before_allocating(tmp_path):
    for path in absurd_files(tmp_path):
        tracemalloc.start()
        try:
            message = load_error(path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 1 << 20, f"{path.name}: {peak} bytes allocated"
        assert "claims" in message or "expected" in message


def test_damaged_files_through_the_cli_exit_2_with_one_line(tmp_path):
    data = small_file(tmp_path).read_bytes()
    flipped = bytearray(data)
    flipped[-3] ^= 0x01
    truncated, bitflip = tmp_path / "truncated.safetensors", tmp_path / "bitflip.safetensors"
    truncated.write_bytes(data[:-7])
    bitflip.write_bytes(flipped)
    for path in (truncated, bitflip, *absurd_files(tmp_path)):
        result = CliRunner().invoke(cli, ["eval", str(path)])
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("seqkit: error: ") and result.stderr.count("\n") == 1, result.stderr
        assert str(path) in result.stderr


def test_the_endurance_script_runs(capsys, one_thread):
    """A smoke run of examples/endurance.py (its figures come from long runs, see the README)."""
    spec = importlib.util.spec_from_file_location("endurance", ROOT / "examples" / "endurance.py")
    endurance = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(endurance)
    figures = endurance.main(["--steps", "6", "--every", "2", "--warmup", "2", "--eval-every", "6",
                              "--train-size", "50"])
    assert figures["final_mib"] > 0
    assert "vs baseline MiB" in capsys.readouterr().out
