"""seqkit.readers: every example says where it comes from, every error names file:line."""

from __future__ import annotations

import numpy as np
import pytest

from seqkit.errors import DataError
from seqkit.readers import read_float_sequences, read_jsonl, read_lines, read_parallel, read_tsv


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_tsv(tmp_path):
    path = write(tmp_path / "a.tsv", "hello\thallo\n\nworld\twelt\r\n")
    examples = list(read_tsv(path))
    assert [(e.source, e.target, e.where) for e in examples] == [
        ("hello", "hallo", f"{path}:1"), ("world", "welt", f"{path}:3")]


def test_tsv_wrong_number_of_fields_names_the_line(tmp_path):
    path = write(tmp_path / "a.tsv", "a\tb\nc\td\ne\tf\tg\n")
    with pytest.raises(DataError, match=rf"^{path}:3: expected 2 TAB-separated fields .*got 3$"):
        list(read_tsv(path))


@pytest.mark.parametrize("reader", [read_tsv, read_lines, lambda p: read_jsonl(p, "s", "t")])
def test_missing_and_empty_files(tmp_path, reader):
    with pytest.raises(DataError, match=f"{tmp_path / 'nope.txt'}: no such file"):
        list(reader(tmp_path / "nope.txt"))
    empty = write(tmp_path / "empty.txt", "\n  \n")
    with pytest.raises(DataError, match=f"{empty}: empty file, no examples"):
        list(reader(empty))


def test_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"fine\n\xff\xfe bad\n")
    with pytest.raises(DataError, match=f"{path}:2: not UTF-8"):
        list(read_lines(path))


def test_lines(tmp_path):
    path = write(tmp_path / "lm.txt", "\ufefffirst line\n\nsecond  line \n")
    examples = list(read_lines(path))
    assert [(e.source, e.target, e.where) for e in examples] == [
        (None, "first line", f"{path}:1"), (None, "second  line ", f"{path}:3")]


def test_parallel(tmp_path):
    source = write(tmp_path / "train.de", "hallo\n\nwelt\n")
    target = write(tmp_path / "train.en", "hello\n\nworld\n")
    examples = list(read_parallel(source, target))
    assert [(e.source, e.target, e.where) for e in examples] == [
        ("hallo", "hello", f"{source}:1"), ("", "", f"{source}:2"), ("welt", "world", f"{source}:3")]


@pytest.mark.parametrize("shorter", ["source", "target"])
def test_parallel_files_of_different_lengths(tmp_path, shorter):
    lines = {"source": "a\nb\nc\n", "target": "x\ny\nz\n"}
    lines[shorter] = "a\nb\n"
    source, target = write(tmp_path / "s.txt", lines["source"]), write(tmp_path / "t.txt", lines["target"])
    with pytest.raises(DataError) as error:
        list(read_parallel(source, target))
    message = str(error.value)
    ended = source if shorter == "source" else target
    assert str(source) in message and str(target) in message
    assert f"{ended} ends after line 2" in message and "line 3" in message


def test_jsonl(tmp_path):
    path = write(tmp_path / "a.jsonl", '{"s": "hi", "t": "ho"}\n\n{"t": "only text", "s": 1}\n')
    examples = list(read_jsonl(path, "s", "t"))
    assert [(e.source, e.target, e.where) for e in examples] == [
        ("hi", "ho", f"{path}:1"), (1, "only text", f"{path}:3")]
    assert [e.source for e in read_jsonl(path, None, "t")] == [None, None]


@pytest.mark.parametrize("line, message", [
    ('{"s": "a", "t": ', "invalid JSON"),
    ('["s", "t"]', "expected a JSON object, got list"),
    ('{"s": "a"}', "missing key 't'"),
])
def test_jsonl_errors_name_the_line(tmp_path, line, message):
    path = write(tmp_path / "a.jsonl", '{"s": "a", "t": "b"}\n' + line + "\n")
    with pytest.raises(DataError, match=f"^{path}:2: {message}"):
        list(read_jsonl(path, "s", "t"))


def test_csv(tmp_path):
    path = write(tmp_path / "a.csv", "# target, then 2 features per step\n1.5, 1,2, 3,4\n\n-2,5,6\n")
    examples = list(read_float_sequences(path, num_features=2))
    assert [(e.source, e.target, e.where) for e in examples] == [
        ([[1.0, 2.0], [3.0, 4.0]], [1.5], f"{path}:2"), ([[5.0, 6.0]], [-2.0], f"{path}:4")]
    two_outputs = list(read_float_sequences(path, num_features=1, num_outputs=2))
    assert two_outputs[0].target == [1.5, 1.0] and two_outputs[0].source == [[2.0], [3.0], [4.0]]


@pytest.mark.parametrize("row, message", [
    ("1,2,abc", "column 3: 'abc' is not a number"),
    ("1,2,nan", "column 3: 'nan' is not a finite number"),
    ("1,2,1e308", "column 3: '1e308' is not a finite number a float32 can hold"),  # inf in the model
    ("1,2,3,4", "expected 1 target value.* multiple of 2 .* got 4 values"),
    ("1", "expected 1 target value.* got 1 values"),
])
def test_csv_errors_name_the_line(tmp_path, row, message):
    path = write(tmp_path / "a.csv", "0,1,1\n" + row + "\n")
    with pytest.raises(DataError, match=f"^{path}:2: {message}"):
        list(read_float_sequences(path, num_features=2))


def test_npz(tmp_path):
    path = tmp_path / "a.npz"
    inputs = np.arange(24, dtype=np.float32).reshape(3, 4, 2)
    np.savez(path, inputs=inputs, targets=np.array([1.0, 2.0, 3.0]), lengths=np.array([4, 1, 2]))
    examples = list(read_float_sequences(path, num_features=2, num_outputs=1))
    assert [e.where for e in examples] == [f"{path}:1", f"{path}:2", f"{path}:3"]
    assert examples[1].source == [[8.0, 9.0]] and examples[1].target == [2.0]
    assert examples[0].source == inputs[0].tolist()
    np.savez(path, inputs=inputs, targets=np.ones((3, 2)))
    assert [len(e.source) for e in read_float_sequences(path)] == [4, 4, 4]
    assert next(read_float_sequences(path)).target == [1.0, 1.0]


@pytest.mark.parametrize("arrays, message", [
    ({"inputs": np.zeros((3, 4))}, "missing array 'targets'"),
    ({"inputs": np.zeros((3, 4)), "targets": np.zeros(3)},
     r"inputs has shape \(3, 4\), expected \(N, S, F\)"),
    ({"inputs": np.zeros((3, 4, 2)), "targets": np.zeros(2)}, r"targets has shape \(2,\), expected \(3,\)"),
    ({"inputs": np.zeros((3, 4, 5)), "targets": np.zeros(3)}, "inputs has 5 features per step, expected 2"),
    ({"inputs": np.zeros((3, 4, 2)), "targets": np.zeros((3, 3))},
     "targets has 3 values per example, expected 1"),
    ({"inputs": np.array([["a"]]), "targets": np.zeros(1)}, "array 'inputs' has dtype <U1, expected numbers"),
    ({"inputs": np.zeros((0, 4, 2)), "targets": np.zeros(0)}, "empty file, no examples"),
    ({"inputs": np.zeros((2, 4, 2)), "targets": np.zeros(2), "lengths": np.array([2, 5])},
     r":2: length 5 is not in \[1, 4\]"),
])
def test_npz_errors_name_the_file(tmp_path, arrays, message):
    path = tmp_path / "a.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=f"^{path}.*{message}"):
        list(read_float_sequences(path, num_features=2, num_outputs=1))


def test_npz_is_never_unpickled(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, inputs=np.array([[[object()]]], dtype=object), targets=np.zeros(1))
    with pytest.raises(DataError, match=f"^{path}: cannot read as .npz"):
        list(read_float_sequences(path))
    garbage = write(tmp_path / "b.npz", "not a zip")
    with pytest.raises(DataError, match=f"^{garbage}: cannot read as .npz"):
        list(read_float_sequences(garbage))
    with pytest.raises(DataError, match="no such file"):
        list(read_float_sequences(tmp_path / "missing.npz"))
    with pytest.raises(DataError, match="expected a .npz or .csv file"):
        read_float_sequences(tmp_path / "a.parquet")


@pytest.mark.parametrize("reader", [read_tsv, read_lines, lambda p: read_jsonl(p, "s", "t")])
def test_devices_pipes_and_folders_are_refused_without_reading(tmp_path, reader):
    import os

    os.mkfifo(tmp_path / "pipe")  # opening it would wait for a writer forever
    for path in (tmp_path / "pipe", "/dev/zero", tmp_path):  # /dev/zero: one endless line
        with pytest.raises(DataError, match=r"(a device, pipe or socket|a folder), not a data file"):
            list(reader(path))


def test_a_line_too_long_to_be_an_example_is_an_error(tmp_path, monkeypatch):
    import seqkit.readers

    monkeypatch.setattr(seqkit.readers, "MAX_LINE_BYTES", 16)
    path = write(tmp_path / "a.tsv", "a\tb\n" + "x" * 40 + "\n")
    with pytest.raises(DataError, match=f"^{path}:2: a line longer than"):
        list(read_tsv(path))


# -- escapes: \t \n \r \\ in tsv, text and parallel files -----------------------------------------

TRICKY = ["tab\there", "two\nlines", "windows\r\nend", "back\\slash", "\\t is not a tab", "ends with \\",
          "\\\\n", "plain"]


def test_escape_writes_the_two_character_sequences():
    from seqkit.readers import escape

    assert escape("a\tb\nc\rd\\e") == "a\\tb\\nc\\rd\\\\e"
    assert escape("\\n") == "\\\\n" and escape("plain") == "plain"


def test_escaped_tsv_round_trip(tmp_path):
    from seqkit.readers import escape

    pairs = list(zip(TRICKY, reversed(TRICKY), strict=True))
    path = write(tmp_path / "a.tsv", "".join(f"{escape(s)}\t{escape(t)}\n" for s, t in pairs))
    assert len(path.read_text(encoding="utf-8").splitlines()) == len(pairs)  # one line per pair
    examples = list(read_tsv(path, escapes=True))
    assert [(e.source, e.target) for e in examples] == pairs
    assert [e.where for e in examples] == [f"{path}:{i}" for i in range(1, len(pairs) + 1)]


def test_escaped_text_and_parallel_files_round_trip(tmp_path):
    from seqkit.readers import escape

    text = write(tmp_path / "lm.txt", "".join(f"{escape(t)}\n" for t in TRICKY))
    assert [e.target for e in read_lines(text, escapes=True)] == TRICKY
    source = write(tmp_path / "train.de", "".join(f"{escape(t)}\n" for t in TRICKY))
    target = write(tmp_path / "train.en", "".join(f"{escape(t.upper())}\n" for t in TRICKY))
    examples = list(read_parallel(source, target, escapes=True))
    assert [(e.source, e.target) for e in examples] == [(t, t.upper()) for t in TRICKY]


@pytest.mark.parametrize("reader, text, message", [
    (read_tsv, "a\tb\nsource\tC:\\qux\n", r"unknown escape \\q in field 2; escapes are \\t \\n \\r \\\\$"),
    (read_tsv, "a\tb\nends\\\tx\n", r"a lone backslash ends field 1; escapes are \\t \\n \\r \\\\$"),
    (read_lines, "a\nfine\\tthen \\x\n", r"unknown escape \\x; escapes are \\t \\n \\r \\\\$"),
    (read_lines, "a\nends\\\n", r"a lone backslash ends the line; escapes are"),
])
def test_an_unknown_escape_names_its_line(tmp_path, reader, text, message):
    path = write(tmp_path / "a.txt", text)
    with pytest.raises(DataError, match=f"^{path}:2: {message}"):
        list(reader(path, escapes=True))


def test_an_unknown_escape_in_a_parallel_file_names_that_file(tmp_path):
    source = write(tmp_path / "s.txt", "a\nb\n")
    target = write(tmp_path / "t.txt", "x\n\\y\n")
    with pytest.raises(DataError, match=rf"^{target}:2: unknown escape \\y; escapes are"):
        list(read_parallel(source, target, escapes=True))


def test_without_escapes_backslashes_stay_as_they_are(tmp_path):
    path = write(tmp_path / "a.tsv", "C:\\new\\tab\tends with \\\n")
    assert [(e.source, e.target) for e in read_tsv(path)] == [("C:\\new\\tab", "ends with \\")]
    text = write(tmp_path / "lm.txt", "a \\q b\n")
    assert [e.target for e in read_lines(text)] == ["a \\q b"]
    jsonl = write(tmp_path / "a.jsonl", '{"s": "a\\\\tb", "t": "c\\td"}\n')  # JSON has its own escapes
    assert [(e.source, e.target) for e in read_jsonl(jsonl, "s", "t")] == [("a\\tb", "c\td")]


@pytest.mark.parametrize("name, options, lines", [
    ("translation", {"train": "train.tsv"}, ["a\\tb\tc\\nd"]),
    ("translation", {"train": "train", "format": "parallel", "source_lang": "de", "target_lang": "en"}, None),
    ("language_model", {"train": "train.txt"}, ["a\\tb\\nc\\\\"]),
    ("classification", {"train": "train.tsv"}, ["a\\tb\tpos"]),
])
def test_the_text_tasks_pass_their_escapes_option(tmp_path, name, options, lines):
    import tomli_w

    import seqkit_tasks
    from seqkit.config import load_config
    from seqkit.plugins import PluginManager

    if lines is None:
        write(tmp_path / "train.de", "a\\tb\n")
        write(tmp_path / "train.en", "c\\nd\n")
    else:
        write(tmp_path / options["train"], "".join(f"{line}\n" for line in lines))
    manager = PluginManager(strict=True)
    manager.load("seqkit_tasks", seqkit_tasks)
    examples = {}
    for escapes in (False, True):
        path = tmp_path / "run.toml"
        path.write_text(tomli_w.dumps({"task": {"name": name, "escapes": escapes, **options}}))
        task = manager.get("task", name).factory(load_config(path, manager=manager).task.options)
        examples[escapes] = next(task.examples("train"))
    text = {"translation": "source", "language_model": "target", "classification": "source"}[name]
    assert "\t" in getattr(examples[True], text) and "\\t" in getattr(examples[False], text)
