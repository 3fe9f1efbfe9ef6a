"""data.bad_lines: a line the readers cannot read stops the run ("error", the default, naming
file:line) or is skipped and counted ("skip", one warning per file), through seqkit.readers.reading,
seqkit.train and `seqkit run`."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w

import seqkit
import seqkit.readers
from seqkit.errors import ConfigError, DataError
from seqkit.readers import read_float_sequences, read_jsonl, read_lines, read_parallel, read_tsv, reading


def write(path, text: str | bytes):
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# Each case: a file of three lines whose line 2 is bad, how to read it, and the problem named.
CASES = {
    "tsv fields": ("a.tsv", "a\tb\nc\td\te\nf\tg\n", read_tsv,
                   "expected 2 TAB-separated fields (source, target), got 3"),
    "invalid json": ("a.jsonl", '{"s": "a", "t": "b"}\n{"s": \n{"s": "c", "t": "d"}\n',
                     lambda p: read_jsonl(p, "s", "t"), "invalid JSON"),
    "not an object": ("a.jsonl", '{"s": "a", "t": "b"}\n["s"]\n{"s": "c", "t": "d"}\n',
                      lambda p: read_jsonl(p, "s", "t"), "expected a JSON object, got list"),
    "missing key": ("a.jsonl", '{"s": "a", "t": "b"}\n{"s": "x"}\n{"s": "c", "t": "d"}\n',
                    lambda p: read_jsonl(p, "s", "t"), "missing key 't'"),
    "not text": ("a.jsonl", '{"s": "a", "t": "b"}\n{"s": "x", "t": null}\n{"s": "c", "t": "d"}\n',
                 lambda p: read_jsonl(p, "s", "t", text_keys=("s", "t")),
                 "t must be text, got NoneType None"),
    "not utf-8": ("a.txt", b"a\n\xff\xfe bad\nc\n", read_lines, "not UTF-8 text (byte 1)"),
    "csv number": ("a.csv", "1,2\n1,x\n3,4\n", read_float_sequences, "column 2: 'x' is not a number"),
    "csv count": ("a.csv", "1,2\n1\n3,4\n", read_float_sequences, "expected 1 target value"),
    "unknown escape": ("a.tsv", "a\tb\nc\\q\td\nf\tg\n", lambda p: read_tsv(p, escapes=True),
                       "unknown escape \\q in field 1"),
    "too long": ("a.tsv", "a\tb\n" + "x" * 60 + "\tlong\nf\tg\n", read_tsv, "a line longer than"),
}


@pytest.fixture
def short_lines(monkeypatch):
    monkeypatch.setattr(seqkit.readers, "MAX_LINE_BYTES", 32)


@pytest.mark.parametrize("case", CASES)
def test_error_is_the_default_and_names_file_and_line(tmp_path, case, short_lines):
    name, text, reader, problem = CASES[case]
    path = write(tmp_path / name, text)
    with pytest.raises(DataError) as error:
        list(reader(path))
    assert str(error.value).startswith(f"{path}:2: {problem}")
    with reading(bad_lines="error"), pytest.raises(DataError, match=f"^{path}:2: "):
        list(reader(path))


@pytest.mark.parametrize("case", CASES)
def test_skip_reads_the_other_lines_and_warns_with_the_count(tmp_path, case, short_lines, caplog):
    name, text, reader, problem = CASES[case]
    path = write(tmp_path / name, text)
    with caplog.at_level(logging.WARNING, logger="seqkit"), reading(bad_lines="skip"):
        examples = list(reader(path))
    assert [e.where for e in examples] == [f"{path}:1", f"{path}:3"]
    [warning] = warnings(caplog)
    assert warning.startswith(f"{path}: skipped 1 unreadable line (first: line 2: {problem}")


def test_the_warning_counts_every_skipped_line_and_names_the_first(tmp_path, caplog):
    path = write(tmp_path / "train.tsv", "a\tb\nbad\nc\td\n\n\t\tz\nx\ty\nlast\n")
    with caplog.at_level(logging.WARNING, logger="seqkit"), reading(bad_lines="skip"):
        examples = list(read_tsv(path))
    assert [(e.source, e.target) for e in examples] == [("a", "b"), ("c", "d"), ("x", "y")]
    assert warnings(caplog) == [f"{path}: skipped 3 unreadable lines (first: line 2: expected 2 "
                                "TAB-separated fields (source, target), got 1)"]


def test_a_too_long_line_is_skipped_to_its_end(tmp_path, short_lines, caplog):
    path = write(tmp_path / "a.txt", "one\n" + "y" * 100 + "\ntwo\n" + "z" * 33)  # the last has no newline
    with caplog.at_level(logging.WARNING, logger="seqkit"), reading(bad_lines="skip"):
        examples = list(read_lines(path))
    assert [(e.target, e.where) for e in examples] == [("one", f"{path}:1"), ("two", f"{path}:3")]
    assert warnings(caplog)[0].startswith(f"{path}: skipped 2 unreadable lines (first: line 2: a line longer")


def test_a_bad_line_in_a_parallel_file_drops_its_pair(tmp_path, caplog):
    source = write(tmp_path / "train.de", "a\nb\nc\nd\n")
    target = write(tmp_path / "train.en", b"w\nx\xff\ny\nz\n")
    with pytest.raises(DataError, match=f"^{target}:2: not UTF-8"):
        list(read_parallel(source, target))
    with caplog.at_level(logging.WARNING, logger="seqkit"), reading(bad_lines="skip"):
        examples = list(read_parallel(source, target))
    assert [(e.source, e.target, e.where) for e in examples] == [
        ("a", "w", f"{source}:1"), ("c", "y", f"{source}:3"), ("d", "z", f"{source}:4")]
    assert warnings(caplog) == [
        f"{target}: skipped 1 unreadable line (first: line 2: not UTF-8 text (byte 2))"]


def test_what_is_not_one_line_stays_an_error(tmp_path):
    with reading(bad_lines="skip"):
        with pytest.raises(DataError, match="no such file"):
            list(read_tsv(tmp_path / "missing.tsv"))
        short = write(tmp_path / "s.txt", "a\n")
        long = write(tmp_path / "t.txt", "x\ny\n")
        with pytest.raises(DataError, match="different numbers of lines"):
            list(read_parallel(short, long))
        with pytest.raises(DataError, match="empty file, no examples"):
            list(read_tsv(write(tmp_path / "empty.tsv", "\n")))
        hopeless = write(tmp_path / "bad.tsv", "one\ntwo\n")
        with pytest.raises(DataError, match=rf"^{hopeless}: no readable example: 2 unreadable lines skipped "
                                            r"\(first: line 1: expected 2 TAB-separated fields"):
            list(read_tsv(hopeless))


def test_a_file_read_again_in_the_same_run_warns_once(tmp_path, caplog):
    path = write(tmp_path / "a.tsv", "a\tb\nbad\n")
    with caplog.at_level(logging.WARNING, logger="seqkit"):
        with reading(bad_lines="skip"):
            list(read_tsv(path))
            with reading(bad_lines="skip"):  # a check nested in a run: the run's record
                list(read_tsv(path))
            list(read_tsv(path))
        assert len(warnings(caplog)) == 1
        with reading(bad_lines="skip"):  # another run warns again
            list(read_tsv(path))
    assert len(warnings(caplog)) == 2


def test_the_policy_holds_where_the_examples_are_iterated(tmp_path):
    """A reader is a generator: the policy in force while it is iterated counts, so a task's
    examples() made outside the context and read inside it (or the reverse) does what the reading does."""
    path = write(tmp_path / "a.tsv", "a\tb\nbad\nc\td\n")

    def task_examples():  # a third-party task's own generator around a reader
        yield from read_tsv(path)

    examples = task_examples()
    with reading(bad_lines="skip"):
        assert len(list(examples)) == 2
    with reading(bad_lines="skip"):
        made_inside = task_examples()
    with pytest.raises(DataError, match=":2: expected 2"):
        list(made_inside)


def test_an_unknown_policy_is_a_config_error():
    with pytest.raises(ConfigError, match="data.bad_lines: must be 'error' or 'skip', got 'ignore'"):
        with reading(bad_lines="ignore"):
            pass


# -- end to end ---------------------------------------------------------------------------------

GOOD = ["a b\tb a", "c d\td c", "a c\tc a", "b d\td b", "d a\ta d", "c b\tb c"]


def translation_run(tmp_path: Path, bad_lines: str) -> dict:
    """A tiny translation run on TSV files whose train split has two bad lines and test one."""
    train = write(tmp_path / "train.tsv", "\n".join(GOOD[:3] + ["a\tb\tc"] + GOOD[3:] + ["x"]) + "\n")
    valid = write(tmp_path / "valid.tsv", "\n".join(GOOD) + "\n")
    test = write(tmp_path / "test.tsv", "\n".join(GOOD[:2] + ["no tab here"]) + "\n")
    return {
        "seed": 1,
        "task": {"name": "translation", "train": str(train), "valid": str(valid), "test": str(test),
                 "tokenizer": "char", "vocab_size": 32},
        "model": {"d_model": 8, "encoder": {"name": "gru"}, "decoder": {"name": "gru"}},
        "data": {"batch_tokens": 32, "bad_lines": bad_lines},
        "train": {"steps": 2, "lr": 1e-3, "warmup_steps": 1, "eval_every": 2, "log_every": 1},
    }


def test_train_stops_at_a_bad_line_by_default(tmp_path):
    config = translation_run(tmp_path, "error")
    with pytest.raises(DataError, match=rf"^{tmp_path / 'train.tsv'}:4: expected 2 TAB-separated fields"):
        seqkit.train(config, out=tmp_path / "run")


def test_train_skips_bad_lines_and_warns_once_per_file(tmp_path, caplog):
    config = translation_run(tmp_path, "skip")
    with caplog.at_level(logging.WARNING, logger="seqkit"):
        result = seqkit.train(config, out=tmp_path / "run", samples=0)
    assert result.summary["step"] == 2
    assert result.test["examples"] == 2  # the test split's bad line is skipped, the rest evaluated
    assert sorted(warnings(caplog)) == [
        f"{tmp_path / 'test.tsv'}: skipped 1 unreadable line (first: line 3: expected 2 TAB-separated "
        "fields (source, target), got 1)",
        f"{tmp_path / 'train.tsv'}: skipped 2 unreadable lines (first: line 4: expected 2 TAB-separated "
        "fields (source, target), got 3)"]


def test_seqkit_run_shows_the_warning_without_debug(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(tomli_w.dumps(translation_run(tmp_path, "skip")))
    seqkit_run = [sys.executable, "-m", "seqkit", "run", str(config), "--out"]
    result = subprocess.run([*seqkit_run, str(tmp_path / "run")], capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (f"seqkit: warning: {tmp_path / 'train.tsv'}: skipped 2 unreadable lines (first: line 4: "
            "expected 2 TAB-separated fields (source, target), got 3)\n") in result.stderr
    assert "Traceback" not in result.stderr
    failed = subprocess.run([*seqkit_run, str(tmp_path / "other"), "--set", "data.bad_lines='error'"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines()[-1].startswith(f"seqkit: error: {tmp_path / 'train.tsv'}:4: ")
    assert "Traceback" not in failed.stderr


def test_config_check_and_a_later_evaluation_follow_the_policy_too(tmp_path):
    """Outside seqkit.train: `seqkit config check` reads the data files, and `seqkit eval` (Model.
    evaluate) encodes a split; both read past the bad lines the run's config skips."""
    from seqkit.config import load_config
    from seqkit.plugins import make_plugin_manager
    from seqkit.preflight import check_run_config

    config = translation_run(tmp_path, "skip")
    manager = make_plugin_manager()
    check_run_config(load_config(config, manager=manager), manager)
    seqkit.train(config, out=tmp_path / "run", test=False)
    metrics, _ = seqkit.load(tmp_path / "run").evaluate("test")
    assert metrics["examples"] == 2


def _reference_lines(path, limit):
    """What the readers gave when they read a line at a time (readline), for comparison."""
    lines = []
    with open(path, "rb") as handle:
        number = 0
        while raw := handle.readline(limit + 1):
            number += 1
            if len(raw) > limit:
                while raw and not raw.endswith(b"\n"):
                    raw = handle.readline(limit + 1)
                lines.append((number, "too long"))
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                lines.append((number, "not utf-8"))
                continue
            text = text.removeprefix("\ufeff") if number == 1 else text
            lines.append((number, text.removesuffix("\n").removesuffix("\r")))
    return lines


@pytest.mark.parametrize("block", [1, 2, 3, 7, 31, 32, 33, 64, 1 << 20])
@pytest.mark.parametrize("ending", ["", "\n", "\r\n"])
def test_reading_a_block_at_a_time_gives_the_lines_of_reading_a_line_at_a_time(
        tmp_path, monkeypatch, short_lines, block, ending):
    monkeypatch.setattr(seqkit.readers, "_BLOCK", block)
    lines = ["\ufeffbom\tfirst", "", "\r", "crlf\tend\r", "é\tü ünïcode", "x" * 31, "y" * 32, "z" * 33,
             "w" * 100, "after\tlong", "\t", "  ", "a\\tb\tc", "ok\tfine", "x" * 31 + "\r"]
    data = "\n".join(lines).encode() + b"\n\xff\xfebad\tutf\nlast\tline" + ending.encode()
    path = tmp_path / "data.tsv"
    path.write_bytes(data)
    told = []
    with reading(bad_lines="skip"):
        bad = seqkit.readers._BadLines(path)
        found = []
        for number, text in seqkit.readers._lines(path, bad):
            found.append((number, text))
            if text is None:
                told.append((number, bad.count))
    expected = _reference_lines(path, 32)
    kinds = {"too long", "not utf-8"}
    assert [(n, t) for n, t in found if t is not None] == [(n, t) for n, t in expected if t not in kinds]
    assert [n for n, t in found if t is None] == [n for n, t in expected if t in kinds] == [7, 8, 9, 15, 16]
    assert [count for _, count in told] == [1, 2, 3, 4, 5]  # each bad line told to `bad` once, in order
    assert bad.first.startswith("line 7: a line longer than")
