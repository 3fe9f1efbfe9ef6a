"""Distributed training on CPU: processes started by torchrun (`seqkit train --nproc 2`) train over
gloo the model one process trains from the same global batches, and runs resume across process
counts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w
import torch
from click.testing import CliRunner

import seqkit
from seqkit import checkpoint as ckpt
from seqkit.cli import cli
from seqkit.data import TokenBatchSampler, step_batches
from seqkit.distributed import Group
from seqkit.run_folder import RunFolder

# 2 processes x accumulate 1 and 1 process x accumulate 2 see the same batches in every step. Their
# gradients differ only in the order of float additions, so losses and weights agree to float32
# rounding (on this machine they came out bitwise equal; the test allows 1e-5 relative).
RTOL, ATOL = 1e-5, 1e-6


def tiny(steps=4, accumulate=2):
    """A small seq2seq run without dropout, so one and two processes compute the same thing."""
    return {
        "seed": 3,
        "task": {"name": "reverse", "symbols": 6, "min_len": 2, "max_len": 5, "train_size": 64,
                 "valid_size": 24, "test_size": 0},
        "model": {"d_model": 16, "embedding_dropout": 0.0, "encoder": {"name": "lstm", "dropout": 0.0},
                  "decoder": {"name": "transformer", "layers": 1, "heads": 2, "dropout": 0.0}},
        "data": {"batch_tokens": 48, "max_source_len": 8, "max_target_len": 8},
        "train": {"steps": steps, "accumulate": accumulate, "lr": 3e-3, "warmup_steps": 2,
                  "eval_every": 4, "log_every": 1, "keep_last": 3},
    }



def seqkit_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 240):
    return subprocess.run([sys.executable, "-m", "seqkit", *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, timeout=timeout)


def losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in RunFolder(run).read_metrics() if "eval" not in r}


def test_two_processes_match_one_and_resume_across_process_counts(tmp_path, one_thread):
    run, reference = tmp_path / "run", tmp_path / "reference"
    seqkit.train(tiny(steps=12), out=reference, test=False)  # 1 process, 2 batches a step

    # steps 1-4: one process; 5-8: two processes (resuming 1 -> 2); 9-12: one again (2 -> 1)
    seqkit.train(tiny(steps=4), out=run, test=False)
    config = tmp_path / "tiny.toml"
    config.write_text(tomli_w.dumps(tiny()))
    result = seqkit_cli("train", "--nproc", "2", str(config), "--out", str(run),
                        "--set", "train.steps=8", "--set", "train.accumulate=1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("run folder:") == 1  # rank 0 alone prints
    assert "resumed from" in result.stderr and "step 4" in result.stderr

    folder = RunFolder(run)
    state, info = ckpt.load_tensors(folder.trainer_path(folder.checkpoint_path(8)))
    assert info["world_size"] == 2
    assert len(info["replicas"]) == 2 and len(set(info["replicas"])) == 1  # identical weights on both ranks
    assert {"rng.cpu", "rng.cpu.1"} <= set(state)

    # the evaluation at step 8 was shared out over the two ranks; one process gets the same metrics
    logged = next(r for r in folder.read_metrics() if r.get("eval") and r["step"] == 8)
    alone, _ = seqkit.load(folder.checkpoint_path(8)).evaluate("valid")
    for key in ("loss", "ppl", "token_accuracy", "exact_match"):
        assert logged[key] == pytest.approx(alone[key], rel=1e-9), key

    seqkit.train(tiny(steps=12), out=run, test=False)
    assert sorted(losses(run)) == list(range(1, 13))
    for step, loss in losses(reference).items():
        assert losses(run)[step] == pytest.approx(loss, rel=RTOL, abs=ATOL), step
    expected, found = (ckpt.load_tensors(RunFolder(r).latest_checkpoint())[0] for r in (reference, run))
    for name in expected:
        torch.testing.assert_close(found[name], expected[name], rtol=RTOL, atol=ATOL)


def test_each_rank_takes_every_world_size_th_batch_of_a_step():
    sampler = TokenBatchSampler([3, 5, 2, 7, 4, 4, 6, 1, 2, 3], batch_tokens=8, seed=1)
    alone = step_batches(iter(sampler), accumulate=4)
    assert sampler.state_dict()["index"] == 4
    ranks = []
    for rank in range(2):
        sampler.load_state_dict({"epoch": 0, "index": 0})
        ranks.append(step_batches(iter(sampler), accumulate=2, rank=rank, world_size=2))
        assert sampler.state_dict()["index"] == 4  # the position counts global batches
    assert ranks == [alone[0::2], alone[1::2]]


def test_one_process_group_is_a_no_op():
    group = Group()
    assert group.is_main and not group.active
    assert group.sum(1.5, 2) == [1.5, 2.0]
    assert group.broadcast_json({"a": [1]}) == {"a": [1]}
    assert [t.tolist() for t in group.all_gather(torch.tensor([7]))] == [[7]]
    group.barrier()


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_a_bad_nproc_is_one_line_and_exit_2(tmp_path, value):
    config = tmp_path / "tiny.toml"
    config.write_text(tomli_w.dumps(tiny()))
    for command in ("run", "train"):
        result = CliRunner().invoke(cli, [command, "--nproc", value, str(config)])
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("seqkit: error: --nproc: ") and result.stderr.count("\n") == 1


def test_nproc_inside_torchrun_and_bad_config_fail_before_launching(tmp_path, monkeypatch):
    config = tmp_path / "tiny.toml"
    config.write_text(tomli_w.dumps(tiny()))
    result = CliRunner().invoke(cli, ["train", "--nproc", "2", str(config), "--set", "train.stepz=3"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "train.stepz" in result.stderr
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = CliRunner().invoke(cli, ["train", "--nproc", "2", str(config)])
    assert result.exit_code == 2 and "already" in result.stderr and result.stderr.count("\n") == 1


def test_a_rank_that_never_arrives_times_out_with_one_line(tmp_path, monkeypatch):
    config = tmp_path / "tiny.toml"
    config.write_text(tomli_w.dumps(tiny()))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(port), "SEQKIT_DISTRIBUTED_TIMEOUT": "1"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, ["train", str(config), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("seqkit: error: cannot join the process group (gloo, rank 0 of 2)")
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_an_error_in_the_processes_is_one_line_for_the_run(tmp_path, monkeypatch):
    """Under --nproc a process writes its seqkit error to a file instead of stderr, and the launcher
    prints one line for the run: rank 0's, else the lowest rank's (both sides run in-process here;
    a real 2-process launch takes seconds)."""
    import torch.distributed.run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    from seqkit.cli import run as cli_run

    config = tmp_path / "tiny.toml"
    config.write_text(tomli_w.dumps(tiny()))
    errors = tmp_path / "errors"
    errors.mkdir()
    for name, value in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", cli_run.RANK_ERRORS: str(errors),
                        "SEQKIT_DISTRIBUTED_TIMEOUT": "soon"}.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, ["train", str(config), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and result.stderr == ""  # the process at rank 1 ...
    line = (errors / "rank-1").read_text()
    assert line == "SEQKIT_DISTRIBUTED_TIMEOUT: must be a positive number of seconds, got 'soon'"
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", cli_run.RANK_ERRORS):
        monkeypatch.delenv(name)

    def failing_run(args):  # ... and the launcher, with torchrun's processes replaced by that one
        (Path(os.environ[cli_run.RANK_ERRORS]) / "rank-1").write_text(line)
        failure = ProcessFailure(local_rank=1, pid=1, exitcode=2, error_file="")
        raise ChildFailedError("seqkit", {1: failure})

    monkeypatch.setattr(torchrun, "run", failing_run)
    result = CliRunner().invoke(cli, ["train", "--nproc", "2", str(config)])
    assert result.exit_code == 2
    assert result.stderr == f"seqkit: error: rank 1: {line}\n"
    assert cli_run.RANK_ERRORS not in os.environ
