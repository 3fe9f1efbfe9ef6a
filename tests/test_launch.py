"""`seqkit run --nproc N` launches its worker processes on the seqkit the launcher runs, whatever
folder it is started from, and a launch that fails is one line on stderr with exit status 2."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w
from click.testing import CliRunner

from seqkit.cli import cli
from seqkit.run_folder import RunFolder


def tiny(steps: int = 2) -> dict:
    """The smallest run two processes can share: a few steps of a tiny seq2seq model."""
    return {
        "seed": 3,
        "task": {"name": "reverse", "symbols": 6, "min_len": 2, "max_len": 5, "train_size": 32,
                 "valid_size": 8, "test_size": 8},
        "model": {"d_model": 16, "encoder": {"name": "gru"}, "decoder": {"name": "gru"}},
        "data": {"batch_tokens": 48, "max_source_len": 8, "max_target_len": 8},
        "train": {"steps": steps, "accumulate": 1, "warmup_steps": 1, "eval_every": steps, "log_every": 1},
    }


def write_config(folder: Path) -> Path:
    config = folder / "tiny.toml"
    config.write_text(tomli_w.dumps(tiny()))
    return config


def kill_processes_in(folder: Path) -> None:
    """Kill the processes working in ``folder`` (a launch's workers left behind by a timeout)."""
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if Path(os.readlink(proc / "cwd")).is_relative_to(folder):
                os.kill(int(proc.name), signal.SIGKILL)


def test_nproc_from_a_folder_holding_a_seqkit_package(tmp_path):
    """A clone of the repository (or any folder named seqkit) in the working directory is not what
    the workers import: they run the seqkit the command runs."""
    work = tmp_path / "work"
    (work / "seqkit").mkdir(parents=True)
    (work / "seqkit" / "__init__.py").write_text("")
    config = write_config(work)
    # what the installed console script does: a script outside the working directory
    script = tmp_path / "bin" / "seqkit-script.py"
    script.parent.mkdir()
    script.write_text("import sys\nfrom seqkit.cli import main\nsys.exit(main())\n")
    command = [sys.executable, str(script), "run", "--nproc", "2", config.name, "--out", "run"]
    try:
        result = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=180,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        kill_processes_in(work)  # torchrun starts each worker in a session of its own
        raise
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "AttributeError" not in result.stderr
    assert result.stdout.count("run folder:") == 1 and "test: " in result.stdout  # rank 0 alone prints
    folder = RunFolder(work / "run")
    assert folder.latest_checkpoint() is not None


def test_workers_that_cannot_import_seqkit_are_one_line_and_exit_2(tmp_path, monkeypatch):
    """Every worker fails before training (its seqkit does not import): the launcher prints one line
    naming what failed, not each worker's traceback."""
    broken = tmp_path / "site"
    (broken / "seqkit").mkdir(parents=True)
    (broken / "seqkit" / "__init__.py").write_text("raise ImportError('broken on purpose')\n")
    # the launcher has its seqkit already; its workers, on its module search path, find the broken one
    monkeypatch.syspath_prepend(str(broken))
    monkeypatch.setenv("PYTHONPATH", str(broken))  # for `python -m seqkit` workers (the earlier launch)
    monkeypatch.chdir(tmp_path)  # whose working directory would come first
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    config = write_config(tmp_path)
    result = CliRunner().invoke(cli, ["run", "--nproc", "2", str(config), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert result.stderr == ("seqkit: error: a worker process cannot import seqkit: "
                             "ImportError: broken on purpose\n")
    assert not (tmp_path / "run" / "checkpoints").exists()


def fake_torchrun(monkeypatch, failure):
    """torch's launcher replaced by one whose worker at local rank 1 ended as ``failure`` says
    (exit status, or minus a signal number) without reporting an error."""
    import torch.distributed.run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    def failing_run(args):
        raise ChildFailedError("seqkit", {1: ProcessFailure(local_rank=1, pid=1, exitcode=failure,
                                                             error_file="")})

    monkeypatch.setattr(torchrun, "run", failing_run)


@pytest.mark.parametrize(("exitcode", "said"), [
    (-9, "rank 1: the worker process was killed by signal SIGKILL"),
    (1, "rank 1: the worker process exited with status 1"),
])
def test_a_worker_that_dies_without_a_word_is_one_line(tmp_path, monkeypatch, exitcode, said):
    fake_torchrun(monkeypatch, exitcode)
    result = CliRunner().invoke(cli, ["train", "--nproc", "2", str(write_config(tmp_path))])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"seqkit: error: {said}") and result.stderr.count("\n") == 1


def test_an_interrupted_worker_keeps_its_status(tmp_path, monkeypatch):
    """Ctrl-C or SIGTERM in the workers: rank 0 said where it saved; the status tells which."""
    fake_torchrun(monkeypatch, 130)
    result = CliRunner().invoke(cli, ["train", "--nproc", "2", str(write_config(tmp_path))])
    assert result.exit_code == 130 and result.stderr == ""


def test_without_torchrun_nproc_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.distributed.run", None)  # import fails, as without it
    result = CliRunner().invoke(cli, ["run", "--nproc", "2", str(write_config(tmp_path))])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("seqkit: error: --nproc: torchrun (torch.distributed.run) cannot be "
                                    "imported") and result.stderr.count("\n") == 1


def test_a_worker_that_cannot_start_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    result = CliRunner().invoke(cli, ["train", "--nproc", "2", str(write_config(tmp_path))])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("seqkit: error: --nproc: cannot start the worker processes: "
                                    "FileNotFoundError: ") and result.stderr.count("\n") == 1
    assert "no-such-python" in result.stderr


def test_an_error_anywhere_in_a_worker_is_its_one_line_for_the_launcher(tmp_path, monkeypatch):
    """Not only training: a worker's command line that fails before it (here: a bad option) writes
    its line where the launcher reads it, and exits 2 without printing."""
    from seqkit.cli import run as cli_run

    monkeypatch.setenv(cli_run.RANK_ERRORS, str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["-c", "train", "--bogus", "tiny.toml"])
    with pytest.raises(SystemExit) as exited:
        cli_run.worker_main(cli)
    assert exited.value.code == 2
    line = (tmp_path / "rank-0").read_text()
    assert "--bogus" in line and line.endswith("(see 'seqkit train --help')") and "\n" not in line
