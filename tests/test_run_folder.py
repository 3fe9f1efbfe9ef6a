"""The run folder: one writer at a time, only seqkit's own files touched, no silent restart, a stored
config that never lies, a best model that is what the run says, full disks and read-only mounts."""

from __future__ import annotations

import errno
import json
import math
import os

import pytest
import tomli_w
from click.testing import CliRunner
from run_state import assert_same_end_state, end_state, tiny

import seqkit
from seqkit import checkpoint as ckpt
from seqkit import run_folder, storage
from seqkit import trainer as train_module
from seqkit.cli import cli
from seqkit.run_folder import RunFolder, RunFolderError
from seqkit.storage import StorageError
from seqkit.trainer import TrainingError


@pytest.fixture(scope="module")
def straight(tmp_path_factory, one_thread):
    run = tmp_path_factory.mktemp("straight")
    seqkit.train(tiny(), out=run, test=False)
    return end_state(run)


def one_line_exit_2(result) -> str:
    """The error line of a command that failed as it should: exit status 2, its last stderr line
    ``seqkit: error: ...`` (progress lines of training may come before it), no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert lines and lines[-1].startswith("seqkit: error: "), result.stderr
    assert "Traceback" not in result.stderr and "seqkit: error:" not in "\n".join(lines[:-1])
    return lines[-1]


def config_file(tmp_path, test_size: int = 0, **train) -> str:
    path = tmp_path / "tiny.toml"
    config = tiny(**train)
    config["task"]["test_size"] = test_size
    path.write_text(tomli_w.dumps(config))
    return str(path)


# -- one writer, our own files only ----------------------------------------------------------------


def test_a_second_run_on_the_same_folder_is_refused_naming_the_holder(tmp_path):
    run = tmp_path / "run"
    with RunFolder(run).lock():
        with pytest.raises(RunFolderError, match=rf"{run}: in use by another seqkit run \(pid {os.getpid()}"):
            seqkit.train(tiny(steps=2), out=run, test=False)
    assert not RunFolder(run).has_history()  # the refused run wrote nothing
    seqkit.train(tiny(steps=2), out=run, test=False)  # the lock went with its holder


def test_an_empty_out_never_trains_into_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.toml").write_text("# the user's own file\n")
    (tmp_path / ".notes.abcdefgh.tmp").write_text("the user's own temporary file\n")
    (tmp_path / "configs").mkdir()
    config = config_file(tmp_path / "configs", steps=2)
    before = sorted(p.name for p in tmp_path.iterdir())
    one_line_exit_2(CliRunner().invoke(cli, ["train", config, "--out", ""]))
    with pytest.raises(RunFolderError, match="empty path"):
        seqkit.train(tiny(steps=2), out="", test=False)
    one_line_exit_2(CliRunner().invoke(cli, ["train", config, "--out", "."]))
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert (tmp_path / "config.toml").read_text() == "# the user's own file\n"


def test_a_folder_seqkit_did_not_make_is_refused(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.toml").write_text("mine = 1\n")
    with pytest.raises(RunFolderError, match="not a seqkit run folder and not empty"):
        seqkit.train(tiny(steps=2), out=project, test=False)
    assert (project / "config.toml").read_text() == "mine = 1\n"
    a_file = tmp_path / "file"
    a_file.write_text("x")
    err = one_line_exit_2(CliRunner().invoke(cli, ["train", config_file(tmp_path), "--out",
                                                   str(a_file / "run")]))
    assert str(a_file) in err


def test_only_seqkit_temporaries_are_removed(tmp_path):
    run = tmp_path / "run"
    seqkit.train(tiny(steps=4), out=run, test=False)
    ours = run / "checkpoints" / ".step-0000008.safetensors.k2j4h5g6.tmp"
    theirs = run / ".notes.txt.abcdefgh.tmp"
    ours.write_bytes(b"x")
    theirs.write_bytes(b"y")
    seqkit.train(tiny(steps=4), out=run, test=False)
    assert not ours.exists() and theirs.read_bytes() == b"y"


# -- no silent restart, a config that never lies ------------------------------------------------------


def test_missing_checkpoints_stop_instead_of_restarting(tmp_path):
    run = tmp_path / "run"
    seqkit.train(tiny(steps=4), out=run, test=False)
    for path in (run / "checkpoints").iterdir():
        path.unlink()
    metrics = (run / "metrics.jsonl").read_text()
    with pytest.raises(RunFolderError, match="no readable checkpoint.*--restart"):
        seqkit.train(tiny(steps=4), out=run, test=False)
    assert (run / "metrics.jsonl").read_text() == metrics and (run / "best.safetensors").exists()
    seqkit.train(tiny(steps=4), out=run, test=False, restart=True)
    assert RunFolder(run).latest_checkpoint() == RunFolder(run).checkpoint_path(4)


def test_restart_over_a_finished_run_starts_over(tmp_path):
    """--restart on a folder holding checkpoints removes them (and their trainer files) and trains
    from step 0: the end state of a fresh run, not an error and not a resume."""
    from run_state import assert_same_end_state, end_state

    seqkit.train(tiny(steps=4, keep_last=2), out=tmp_path / "run", test=False)
    seqkit.train(tiny(steps=6), out=tmp_path / "run", test=False, restart=True)
    seqkit.train(tiny(steps=6), out=tmp_path / "fresh", test=False)
    assert_same_end_state(end_state(tmp_path / "run"), end_state(tmp_path / "fresh"))


def test_a_corrupt_latest_checkpoint_is_reported_not_silently_skipped(tmp_path):
    run = tmp_path / "run"
    seqkit.train(tiny(steps=8, keep_last=2), out=run, test=False)
    latest = RunFolder(run).checkpoint_path(8)
    latest.write_bytes(latest.read_bytes()[:-10])
    said = []
    seqkit.train(tiny(steps=8, keep_last=2), out=run, test=False,
                 events=train_module.Events(message=said.append))
    assert any("skipping a checkpoint" in line and "step-0000008" in line for line in said)


def test_a_changed_model_is_one_line_naming_the_keys(tmp_path):
    run = tmp_path / "run"
    seqkit.train(tiny(steps=4), out=run, test=False)
    config = config_file(tmp_path)
    err = one_line_exit_2(CliRunner().invoke(cli, ["train", config, "--out", str(run),
                                                   "--set", "model.d_model=32", "--set", "seed=9"]))
    assert "model.d_model: 16 -> 32" in err and "seed: 5 -> 9" in err and "--restart" in err


def test_changed_training_keys_apply_from_the_resumed_step_and_are_recorded(tmp_path, monkeypatch):
    run = tmp_path / "run"
    seqkit.train(tiny(steps=4), out=run, test=False)
    seen = []
    real = train_module.Trainer._step

    def spy(self, batches, step):
        real(self, batches, step)
        seen.append((step, self.optimizer.param_groups[0]["lr"], self.optimizer.param_groups[0]["betas"]))

    monkeypatch.setattr(train_module.Trainer, "_step", spy)
    seqkit.train(tiny(steps=6, lr=1e-2, warmup_steps=0, schedule="constant", betas=[0.8, 0.9]),
                 out=run, test=False)
    assert seen == [(5, 1e-2, (0.8, 0.9)), (6, 1e-2, (0.8, 0.9))]
    stored = (run / "config.toml").read_text()
    assert "# from step 4: train.lr: 0.003 -> 0.01" in stored and "lr = 0.01" in stored
    assert "# from step 4: train.steps: 4 -> 6" in stored
    assert seqkit.load_config(run / "config.toml").train.lr == 1e-2  # the comments keep it valid TOML


# -- the best model ------------------------------------------------------------------------------------


def test_a_non_finite_evaluation_is_never_saved_nor_best(tmp_path, monkeypatch):
    real, calls = train_module.evaluate, {"n": 0}

    def diverging(*args, **kwargs):
        calls["n"] += 1
        found, predictions = real(*args, **kwargs)
        return ({k: math.nan for k in found} if calls["n"] >= 2 else found), predictions

    monkeypatch.setattr(train_module, "evaluate", diverging)
    run = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"step 8: valid loss is nan.*last good checkpoint: .*step-0+4"):
        seqkit.train(tiny(), out=run, test=False)
    folder = RunFolder(run)
    assert folder.latest_checkpoint() == folder.checkpoint_path(4) and folder.best_step() == 4


@pytest.mark.parametrize("failure", ["crash", "disk full"])
def test_a_failure_between_a_checkpoint_and_best_is_repaired(tmp_path, monkeypatch, straight, failure):
    """The trainer state of the last step says 'best = step 12' before best.safetensors holds it: a
    crash or a full disk in between must not leave the old best in place for good (nothing is left
    to train that would overwrite it), nor let pruning delete step 12."""
    run = tmp_path / "run"

    def fail(operation, path):
        if path.name == "best.safetensors" and operation == "rename" and (
                RunFolder(run).checkpoint_path(12).exists()):
            if failure == "crash":
                raise SystemExit("simulated crash")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(storage, "fault", fail)
    if failure == "crash":
        with pytest.raises(SystemExit):
            seqkit.train(tiny(), out=run, test=False)
    else:
        with pytest.raises(StorageError, match=rf"{run / 'best.safetensors'}: cannot write: No space left"):
            seqkit.train(tiny(), out=run, test=False)
        assert RunFolder(run).best_step() == 8  # the previous best is intact
    monkeypatch.setattr(storage, "fault", None)
    seqkit.train(tiny(), out=run, test=False)
    assert_same_end_state(end_state(run), straight)


# -- read-only and full disks ------------------------------------------------------------------------


def test_a_finished_run_on_a_read_only_mount_runs_without_writing(tmp_path, monkeypatch):
    run = tmp_path / "run"
    config = config_file(tmp_path, test_size=8, steps=4)
    assert CliRunner().invoke(cli, ["run", config, "--out", str(run)]).exit_code == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}

    def read_only(operation, path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    real_open = os.open

    def open_lock(path, flags, *args):
        if str(path).endswith(run_folder.LOCK_NAME):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_open(path, flags, *args)

    monkeypatch.setattr(storage, "fault", read_only)
    monkeypatch.setattr(run_folder.os, "open", open_lock)
    result = CliRunner().invoke(cli, ["run", config, "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert "test: loss" in result.stdout
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    # more steps need a write: one line naming the file
    err = one_line_exit_2(CliRunner().invoke(cli, ["run", config, "--out", str(run),
                                                   "--set", "train.steps=8"]))
    assert "Read-only file system" in err and str(run) in err


def test_disk_full_is_one_line_naming_the_file_and_keeps_what_was_saved(tmp_path, monkeypatch):
    run = tmp_path / "run"

    def full(operation, path):
        if operation == "write" and path.name == "step-0000008.trainer.safetensors":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(storage, "fault", full)
    err = one_line_exit_2(CliRunner().invoke(cli, ["train", config_file(tmp_path), "--out", str(run)]))
    assert f"{run / 'checkpoints' / 'step-0000008.trainer.safetensors'}: cannot write: No space left" in err
    folder = RunFolder(run)
    assert folder.latest_checkpoint() == folder.checkpoint_path(4)
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 8
    ckpt.load_tensors(folder.best)


def test_config_toml_notes_a_change_only_with_a_checkpoint_trained_under_it(tmp_path, monkeypatch):
    run = tmp_path / "run"
    seqkit.train(tiny(steps=4), out=run, test=False)
    stored = (run / "config.toml").read_bytes()
    real = train_module.loss_parts

    def diverged(*args, **kwargs):
        parts = real(*args, **kwargs)
        parts.loss = parts.loss * math.nan
        return parts

    monkeypatch.setattr(train_module, "loss_parts", diverged)
    with pytest.raises(TrainingError):
        seqkit.train(tiny(steps=8), out=run, test=False)
    assert (run / "config.toml").read_bytes() == stored  # nothing ran under train.steps = 8
    monkeypatch.undo()
    seqkit.train(tiny(steps=8), out=run, test=False)
    seqkit.train(tiny(steps=8), out=run, test=False)
    notes = [line for line in (run / "config.toml").read_text().splitlines() if line.startswith("#")]
    assert notes == ["# from step 4: train.steps: 4 -> 8"]


def test_plot_of_a_torn_metrics_file_and_onto_a_read_only_folder(tmp_path, monkeypatch):
    run = tmp_path / "run"
    seqkit.train(tiny(steps=4), out=run, test=False)
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 5, "loss"')  # a crash in the middle of an append
    assert CliRunner().invoke(cli, ["plot", str(run)]).exit_code == 0
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"

    def read_only(operation, path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(storage, "fault", read_only)
    err = one_line_exit_2(CliRunner().invoke(cli, ["plot", str(run), "-o", str(tmp_path / "c.png")]))
    assert f"{tmp_path / 'c.png'}: cannot write: Read-only file system" in err
    assert not (tmp_path / "c.png").exists()


def test_outputs_never_replace_a_folder_or_a_device(tmp_path):
    run = tmp_path / "run"
    seqkit.train(tiny(steps=4), out=run, test=False)
    (tmp_path / "out.png").mkdir()
    with pytest.raises(StorageError, match="cannot write: a folder"):
        storage.atomic_write(tmp_path / "out.png", b"x")
    assert (tmp_path / "out.png").is_dir()
    os.mkfifo(tmp_path / "pipe.png")
    err = one_line_exit_2(CliRunner().invoke(cli, ["plot", str(run), "-o", str(tmp_path / "pipe.png")]))
    assert "cannot write: a device, pipe or socket" in err and not (tmp_path / "pipe.png").is_file()


def test_damaged_metrics_lines_are_skipped_and_a_metrics_folder_is_one_line(tmp_path):
    run = tmp_path / "run"
    seqkit.train(tiny(steps=4), out=run, test=False)
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": "x", "loss": "y"}\n{"step": 3, "eval": "valid", "loss": [1]}\n')
        f.write('[1, 2]\n{"step": 9}\n')
    assert CliRunner().invoke(cli, ["plot", str(run), "-o", str(tmp_path / "c.png")]).exit_code == 0
    seqkit.train(tiny(steps=8), out=run, test=False)  # resumes, dropping the damaged lines
    assert {4, 8} <= {r["step"] for r in RunFolder(run).read_metrics() if "eval" in r}
    assert all(type(r["step"]) is int for r in RunFolder(run).read_metrics())
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").mkdir()
    for args in (["plot", str(run)], ["train", config_file(tmp_path, steps=8), "--out", str(run)]):
        err = one_line_exit_2(CliRunner().invoke(cli, args))
        assert f"{run / 'metrics.jsonl'}: a folder, not seqkit's metrics file" in err


@pytest.mark.parametrize("damage", [
    lambda info: info["progress"].update(step=99),
    lambda info: info["progress"].update(history=[{"step": 3, "eval": "valid", "loss": 1.0}, "x"]),
    lambda info: info["progress"].update(best_value=float("nan")),
    lambda info: info["progress"].pop("sampler"),
    lambda info: info.pop("optimizer"),
    "nan moments",  # fuzz: the first step ran, logged a line, and the second diverged
])
def test_a_damaged_trainer_state_is_one_line_and_writes_nothing(tmp_path, damage):
    """The checksum holds (an edited file, a buggy writer) but the contents are wrong: refused
    before any repair of the run folder is written."""
    run = tmp_path / "run"
    seqkit.train(tiny(steps=4), out=run, test=False)
    folder = RunFolder(run)
    trainer = folder.trainer_path(folder.checkpoint_path(4))
    state, info = ckpt.load_tensors(trainer)
    if damage == "nan moments":
        state = {k: v.clone().fill_(math.nan) if k.endswith("exp_avg") else v for k, v in state.items()}
    else:
        damage(info)
    ckpt.save_tensors(trainer, state, info)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".seqkit.lock"}
    config = config_file(tmp_path, steps=8)
    err = one_line_exit_2(CliRunner().invoke(cli, ["train", config, "--out", str(run)]))
    assert f"{trainer}: damaged trainer state" in err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".seqkit.lock"} == before
