"""What a run shows while it trains: ConsoleProgress on a terminal and in a pipe, the Events that
carry it (old four-argument step callbacks included), and seqkit.train's progress= argument."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

import seqkit
from seqkit.errors import ConfigError
from seqkit.events import Events, RunInfo
from seqkit.progress import ConsoleProgress, format_clock, format_seconds


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tiny(steps=6):
    return {
        "seed": 3,
        "task": {"name": "reverse", "symbols": 6, "min_len": 2, "max_len": 5, "train_size": 32,
                 "valid_size": 8, "test_size": 8},
        "model": {"d_model": 16, "encoder": {"name": "gru"}, "decoder": {"name": "gru"}},
        "data": {"batch_tokens": 64, "max_source_len": 8, "max_target_len": 8},
        "train": {"steps": steps, "lr": 3e-3, "warmup_steps": 2, "eval_every": 3, "log_every": 2},
    }


INFO = RunInfo(backend="cpu", device="cpu (test)", precision="fp32", parameters=12_345,
               folder=Path("runs/x"), steps=100, data={"train": {"examples": 64, "tokens": 700},
                                                        "valid": {"examples": 16, "tokens": 170}},
               source_vocab=9, target_vocab=10, model_kind="seq2seq")


def test_terminal_rewrites_one_line_with_every_field_and_an_eta_from_the_recent_rate():
    stream, clock = FakeTerminal(), Clock()
    progress = ConsoleProgress(stream, clock=clock, refresh=0.0, columns=200)
    progress.phase("encoding data", "started")
    clock.now += 5
    progress.phase("encoding data", "finished", 5.0)
    progress.started(INFO)
    clock.now += 60  # start-up before the first step (compilation, ...): not in the ETA
    for step in range(1, 11):
        clock.now += 0.5  # 2 steps per second
        progress.step(step, 100, 1.5, 1234.0, 0.001)
    text = stream.getvalue()
    assert "encoding data ...\r" in text or "\r\033[Kencoding data ..." in text
    assert "encoding data: 5.0 s\n" in text
    assert "training a seq2seq model of 12,345 parameters\n" in text
    assert "backend cpu, device cpu (test), precision fp32" in text
    assert "data: train 64 examples (700 tokens), valid 16 examples (170 tokens)" in text
    assert "vocabulary: source 9, target 10" in text and "run folder: runs" in text
    last = text.rpartition("\r\033[K")[2]  # the line as it stands on the screen
    assert "\n" not in last  # rewritten in place, not scrolled
    assert last.startswith("[###.") and "10/100" in last and "loss 1.5000" in last and "lr 0.001" in last
    assert "2 steps/s" in last and "1,234 tok/s" in last and "elapsed 1:10" in last
    assert "ETA 0:45" in last  # 90 steps at 2 per second, the start-up left out


def test_terminal_line_fits_the_terminal_so_it_can_be_rewritten():
    stream, clock = FakeTerminal(), Clock()
    progress = ConsoleProgress(stream, columns=80, refresh=0.0, clock=clock)
    for step in (1, 2):
        clock.now += 2.0
        progress.step(step, 100, 1.5, 1234.0, 0.001)
    progress.phase("evaluating on valid", "started")
    shown = stream.getvalue().split("\r\033[K")[1:]
    assert all(len(line) <= 79 for line in shown)
    assert shown[1].startswith("[") and "2/100  loss 1.5000" in shown[1] and "ETA 3:16" in shown[1]
    assert "lr " not in shown[1] and "tok/s" not in shown[1] and "0.5 steps/s" in shown[1]  # dropped first
    narrow = FakeTerminal()
    ConsoleProgress(narrow, columns=30, refresh=0.0).step(1, 100, 1.5, 1234.0, 0.001)
    assert narrow.getvalue() == "\r\033[K1/100  loss 1.5000  ETA -"


def test_terminal_eta_leaves_out_time_spent_in_phases():
    stream, clock = FakeTerminal(), Clock()
    progress = ConsoleProgress(stream, clock=clock, refresh=0.0, columns=200)
    for step in range(1, 5):
        clock.now += 1.0
        progress.step(step, 10, 1.0, 10.0, 0.1)
    progress.phase("evaluating on valid", "started")
    clock.now += 30
    progress.phase("evaluating on valid", "finished", 30.0)
    progress.evaluated(4, {"loss": 0.5, "bleu": 12.25})
    clock.now += 1.0
    progress.step(5, 10, 1.0, 10.0, 0.1)
    screen = stream.getvalue()
    assert "evaluating on valid: 30.0 s\n" in screen and "eval @ 4: loss 0.5  bleu 12.25\n" in screen
    assert "ETA 0:05" in screen.rpartition("\r\033[K")[2]  # 1 step/s, not 5 steps in 35 s


def test_terminal_last_step_stays_and_what_follows_goes_below():
    stream = FakeTerminal()
    progress = ConsoleProgress(stream, refresh=0.0)
    progress.step(1, 2, 1.0, 10.0, 0.1)
    progress.step(2, 2, 0.9, 10.0, 0.1)
    progress.phase("evaluating on test", "started")
    progress.phase("evaluating on test", "finished", 0.5)
    lines = stream.getvalue().split("\n")
    assert any("2/2" in line and "ETA 0:00" in line for line in lines[:-1])  # the bar ended with a newline
    assert lines[-2].endswith("evaluating on test: 0.50 s")


def test_pipe_gets_plain_periodic_lines_with_the_same_fields_and_the_last_step():
    stream, clock = io.StringIO(), Clock()
    progress = ConsoleProgress(stream, clock=clock, interval=10.0)
    progress.started(INFO)
    progress.phase("evaluating on valid", "started")
    progress.phase("evaluating on valid", "finished", 0.25)
    for step in range(1, 101):
        clock.now += 0.5
        progress.step(step, 100, 2.0, 50.0, 0.01)
    text = stream.getvalue()
    assert "\r" not in text and "\033" not in text
    lines = [line for line in text.splitlines() if line.startswith("step ")]
    assert 4 <= len(lines) <= 7  # 50 s of training: one line per ~10 s, and the last step
    assert lines[-1].startswith("step 100/100") and "ETA 0:00" in lines[-1]
    for line in lines:
        assert re.search(r"loss 2\.0000  lr 0\.01  (2|-) steps/s  50 tok/s  elapsed \d+:\d\d  ETA", line)
    assert "evaluating on valid ...\n" in text and "evaluating on valid: 0.25 s\n" in text
    assert "resuming" not in text and "steps: 100" in text


def test_pipe_holds_start_up_phases_for_the_header_and_a_failed_phase_leaves_no_line():
    stream = io.StringIO()
    progress = ConsoleProgress(stream)
    progress.phase("checking the config", "started")
    progress.phase("checking the config", "finished", 2.5)
    progress.phase("encoding data", "started")
    assert stream.getvalue() == ""  # a start-up error would be the only line
    progress.phase("encoding data", "finished", 1.0)
    progress.started(INFO)
    lines = stream.getvalue().splitlines()
    assert lines[:3] == ["checking the config: 2.5 s", "encoding data: 1.0 s", "training a seq2seq model "
                                                                               "of 12,345 parameters"]
    progress.phase("evaluating on test", "started")
    progress.phase("evaluating on test", "failed", 3.0)
    assert stream.getvalue().splitlines()[-1] == "evaluating on test ..."
    refused = io.StringIO()
    ConsoleProgress(refused).phase("checking the config", "failed", 0.1)
    assert refused.getvalue() == ""


def test_terminal_erases_a_failed_phase_so_the_error_takes_its_line():
    stream = FakeTerminal()
    progress = ConsoleProgress(stream)
    progress.phase("checking the config", "started")
    progress.phase("checking the config", "failed", 0.2)
    assert stream.getvalue() == "\r\033[Kchecking the config ...\r\033[K"


def test_seqkit_run_refused_at_start_up_is_one_line(tmp_path):
    from click.testing import CliRunner

    from seqkit.cli import cli

    config = write_config(tmp_path)
    result = CliRunner().invoke(cli, ["run", str(config), "--set", "model.d_model=0"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("seqkit: error: ") and "d_model" in result.stderr


def test_header_names_the_resume_point():
    info = RunInfo(**{**INFO.__dict__, "start_step": 40, "resumed_from": Path("runs/x/step-40")})
    stream = io.StringIO()
    ConsoleProgress(stream).started(info)
    assert "resuming from runs/x/step-40 at step 40 of 100" in stream.getvalue()


def test_durations_read_as_a_person_says_them():
    assert [format_seconds(s) for s in (0.123, 12.34, 125, 3725)] == ["0.12 s", "12.3 s", "2:05", "1:02:05"]
    assert format_clock(59.6) == "1:00"


def test_a_four_argument_step_callback_still_works_and_a_five_argument_one_gets_the_lr():
    old, new, seen = [], [], []
    events = Events(step=lambda step, total, loss, rate: old.append((step, total, loss, rate)))
    events.report_step(1, 10, 2.0, 30.0, 0.5)
    Events(step=lambda *args: new.append(args)).report_step(1, 10, 2.0, 30.0, 0.5)
    assert old == [(1, 10, 2.0, 30.0)] and new == [(1, 10, 2.0, 30.0, 0.5)]
    both = Events.of(events, ConsoleProgress(io.StringIO(), interval=0), Events(message=seen.append))
    both.report_step(2, 10, 1.0, 30.0, 0.5)
    both.message("hello")
    assert old[-1] == (2, 10, 1.0, 30.0) and seen == ["hello"]


def test_train_shows_header_phases_and_steps_on_a_given_stream_and_never_on_stdout(tmp_path, capsys):
    stream = io.StringIO()
    steps, infos = [], []
    events = Events(step=lambda step, total, loss, rate: steps.append(step), started=infos.append)
    seqkit.train(tiny(), out=tmp_path / "run", events=events,
                 progress=ConsoleProgress(stream, interval=0.0), samples=1)
    text = stream.getvalue()
    for expected in ("checking the config: ", "task.fit on train", "preparing the train split (encoding",
                     "encoding valid: ",
                     "training a seq2seq model of", "data: train 32 examples", "vocabulary: source",
                     "run folder: ", "step 6/6  loss", "evaluating on valid: ", "eval @ 3: loss",
                     "loading the best model: ", "encoding test: ", "evaluating on test (loss, decoding 8"):
        assert expected in text, expected
    assert steps == [1, 2, 3, 4, 5, 6] and infos[0].parameters > 0 and infos[0].steps == 6
    assert capsys.readouterr() == ("", "")  # nothing on stdout, nothing else on stderr


def test_train_is_quiet_by_default_even_on_a_terminal_and_in_a_pipe(tmp_path, capsys, monkeypatch):
    """Library code never prints: progress is shown when asked for (the CLI asks)."""
    seqkit.train(tiny(2), out=tmp_path / "a", test=False)
    assert capsys.readouterr() == ("", "")
    monkeypatch.setattr("sys.stderr", FakeTerminal())
    seqkit.train(tiny(2), out=tmp_path / "b", test=False)
    seqkit.train(tiny(2), out=tmp_path / "c", test=False, progress=False)
    assert __import__("sys").stderr.getvalue() == ""


def test_an_error_during_training_starts_on_a_line_of_its_own(tmp_path):
    """The bar is a line without its newline: a run that raises ends it, so the error (or the
    interrupt message) that follows is not glued to it."""
    stream = FakeTerminal()

    def fail(step, metrics):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        seqkit.train(tiny(), out=tmp_path / "run", test=False, events=Events(evaluated=fail),
                     progress=ConsoleProgress(stream, refresh=0.0))
    assert "] 3/6" in stream.getvalue() and stream.getvalue().endswith("\n")


def test_close_ends_an_open_terminal_line_once():
    stream = FakeTerminal()
    progress = ConsoleProgress(stream, refresh=0.0)
    progress.close()
    assert stream.getvalue() == ""
    progress.step(1, 4, 1.0, 10.0, 0.1)
    progress.close()
    progress.close()
    assert "1/4" in stream.getvalue() and stream.getvalue().endswith("\n")
    assert stream.getvalue().count("\n") == 1


def test_a_warning_logged_on_a_terminal_clears_the_bar_first():
    """The CLI's log lines go to the terminal the bar is drawn on: each erases the bar's line
    first (the bar is drawn again below it at the next step)."""
    import logging

    from seqkit.cli.group import log_handler
    from seqkit.progress import CLEAR_LINE

    record = logging.makeLogRecord({"levelname": "WARNING", "msg": "careful", "levelno": 30})
    terminal, pipe = FakeTerminal(), io.StringIO()
    log_handler(terminal).emit(record)
    log_handler(pipe).emit(record)
    assert terminal.getvalue() == CLEAR_LINE + "seqkit: warning: careful\n"
    assert pipe.getvalue() == "seqkit: warning: careful\n"


def test_train_progress_true_writes_to_a_pipe_too(tmp_path, capsys):
    seqkit.train(tiny(2), out=tmp_path / "run", test=False, progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "step 2/2" in err and "training a seq2seq model" in err


def test_only_rank_zero_reports(tmp_path, monkeypatch):
    from seqkit import api

    monkeypatch.setattr(api, "launched_rank", lambda: 1)
    monkeypatch.setattr("sys.stderr", FakeTerminal())
    heard = []
    seqkit.train(tiny(2), out=tmp_path / "run", test=False, progress=True,
                 events=Events(message=heard.append))
    assert __import__("sys").stderr.getvalue() == "" and heard == []


@pytest.mark.parametrize("value", [3, "yes", object()])
def test_bad_progress_or_events_is_a_config_error(tmp_path, value):
    with pytest.raises(ConfigError, match=r"^(progress|events): must be"):
        seqkit.train(tiny(2), out=tmp_path / "run", progress=value)
    with pytest.raises(ConfigError, match=r"^events: must be"):
        seqkit.train(tiny(2), out=tmp_path / "run", events=value)


def write_config(tmp_path) -> Path:
    import tomli_w

    path = tmp_path / "tiny.toml"
    path.write_text(tomli_w.dumps(tiny(4)), encoding="utf-8")
    return path


def test_seqkit_run_shows_header_phases_and_fields_on_stderr_and_keeps_stdout_clean(tmp_path):
    from click.testing import CliRunner

    from seqkit.cli import cli

    result = CliRunner().invoke(cli, ["run", str(write_config(tmp_path)), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    for expected in ("checking the config: ", "task.fit on train", "preparing the train split (encoding",
                     "encoding valid: ",
                     "training a seq2seq model of", "backend cpu, device cpu", "data: train 32 examples",
                     "vocabulary: source", "eval @ 3: loss", "evaluating on valid: ", "encoding test: ",
                     "evaluating on test (loss, decoding 8 examples): "):
        assert expected in result.stderr, expected
    assert re.search(r"step 4/4  loss \d\.\d{4}  lr [\d.e-]+  [\d.]+ steps/s  [\d,]+ tok/s  "
                     r"elapsed \d+:\d\d  ETA 0:00", result.stderr), result.stderr
    assert "\r" not in result.stderr  # not a terminal: plain lines
    assert "loss" not in result.stdout.partition("test: ")[0]  # results only: no progress line
    assert "evaluating" not in result.stdout and "training a" not in result.stdout
    assert "run folder: " in result.stdout and result.stdout.rstrip().splitlines()[-1].startswith("test: ")


def test_seqkit_train_shows_progress_too(tmp_path):
    from click.testing import CliRunner

    from seqkit.cli import cli

    result = CliRunner().invoke(cli, ["train", str(write_config(tmp_path)), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "training a seq2seq model" in result.stderr and "step 4/4" in result.stderr
    assert result.stdout.startswith("run folder: ") and len(result.stdout.splitlines()) == 1


def test_a_resumed_run_says_where_it_resumes_from(tmp_path):
    seqkit.train(tiny(3), out=tmp_path / "run", test=False, progress=False)
    stream, infos = io.StringIO(), []
    seqkit.train(tiny(6), out=tmp_path / "run", test=False, progress=ConsoleProgress(stream),
                 events=Events(started=infos.append))
    assert infos[0].start_step == 3 and infos[0].resumed_from.name == "step-0000003.safetensors"
    text = stream.getvalue()
    assert "  resuming from " in text and "step-0000003.safetensors at step 3 of 6\n" in text
