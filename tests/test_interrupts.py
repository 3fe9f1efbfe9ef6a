"""Ctrl-C and SIGTERM: a signal inside a step, during an evaluation, or twice, leaves a run that
resumes to exactly the end state of a run that never stopped."""

from __future__ import annotations

import os
import signal

import pytest
import tomli_w
from click.testing import CliRunner
from run_state import assert_same_end_state, end_state, metrics, tiny

import seqkit
from seqkit import trainer as train_module
from seqkit.cli import cli
from seqkit.interrupts import Interrupted
from seqkit.run_folder import RunFolder


@pytest.fixture(scope="module")
def straight(tmp_path_factory, one_thread):
    run = tmp_path_factory.mktemp("straight")
    seqkit.train(tiny(), out=run, test=False)
    return end_state(run)


def signal_at(monkeypatch, name: str, calls: set[int], signum=signal.SIGINT) -> None:
    """Send ``signum`` to this process from inside the ``calls``-th calls (1-based) of trainer.``name``."""
    real, count = getattr(train_module, name), {"n": 0}

    def wrapped(*args, **kwargs):
        count["n"] += 1
        if count["n"] in calls:
            os.kill(os.getpid(), signum)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, name, wrapped)


def test_ctrl_c_inside_a_step_saves_that_step_whole(tmp_path, monkeypatch, straight):
    run = tmp_path / "run"
    signal_at(monkeypatch, "loss_parts", {6})  # inside the forward pass of step 6
    with pytest.raises(Interrupted) as info:
        seqkit.train(tiny(), out=run, test=False)
    assert info.value.saved == RunFolder(run).checkpoint_path(6)
    assert RunFolder(run).latest_checkpoint() == RunFolder(run).checkpoint_path(6)
    monkeypatch.undo()
    seqkit.train(tiny(), out=run, test=False)
    assert_same_end_state(end_state(run), straight)


def test_sigterm_saves_and_exits_like_ctrl_c(tmp_path, monkeypatch, straight):
    run = tmp_path / "run"
    signal_at(monkeypatch, "loss_parts", {3}, signal.SIGTERM)
    config = tmp_path / "tiny.toml"
    config.write_text(tomli_w.dumps(tiny()))
    result = CliRunner().invoke(cli, ["train", str(config), "--out", str(run)])
    assert result.exit_code == 128 + signal.SIGTERM, result.output
    assert "interrupted; saved" in result.stderr and "step-0000003" in result.stderr
    monkeypatch.undo()
    assert CliRunner().invoke(cli, ["train", str(config), "--out", str(run)]).exit_code == 0
    assert_same_end_state(end_state(run), straight)


def test_ctrl_c_during_an_evaluation_evaluates_on_resume(tmp_path, monkeypatch, straight):
    run = tmp_path / "run"
    signal_at(monkeypatch, "evaluate", {2})  # the evaluation of step 8
    with pytest.raises(Interrupted) as info:
        seqkit.train(tiny(), out=run, test=False)
    assert info.value.saved == RunFolder(run).checkpoint_path(8)
    assert [r["step"] for r in metrics(run) if "eval" in r] == [4]  # step 8 not evaluated yet
    monkeypatch.undo()
    seqkit.train(tiny(), out=run, test=False)
    state = end_state(run)
    assert [r["step"] for r in state["metrics"] if "eval" in r] == [4, 8, 12]
    assert_same_end_state(state, straight)  # step 8 competed for best like any other


def test_a_second_ctrl_c_stops_at_once_without_saving(tmp_path, monkeypatch):
    run = tmp_path / "run"
    signal_at(monkeypatch, "loss_parts", {11, 12})  # both batches of step 6 (accumulate = 2)
    with pytest.raises(Interrupted) as info:
        seqkit.train(tiny(accumulate=2), out=run, test=False)
    assert info.value.saved is None
    assert RunFolder(run).latest_checkpoint() == RunFolder(run).checkpoint_path(4)
