"""Line-by-line readers of data files into :class:`seqkit.interfaces.Example`.

Every reader is a generator (files are read lazily) and every example names its origin in
``where`` as ``file:line``. Every problem is a :class:`seqkit.errors.DataError` with one line that
names the file (and line) and what is wrong. Text files are UTF-8; a trailing newline ("\\n" or
"\\r\\n") is not part of a line. A file that yields no example is an error.

A bad line (one the reader cannot read: wrong number of fields, invalid JSON, not UTF-8, ...)
is an error unless the code that iterates the examples runs inside ``reading(bad_lines="skip")``:
then it is skipped, counted, and each file's count is logged as one warning. A problem that is
not one line (a missing file, parallel files of different lengths, no readable example) is
always an error.

With ``escapes=True`` the tsv, text and parallel readers decode ``\\t``, ``\\n``, ``\\r`` and
``\\\\`` in a field to tab, newline, carriage return and backslash (see :func:`escape`); any other
backslash sequence makes the line bad. Without it a field holds no tab and no newline.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import zipfile
from collections.abc import Collection, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqkit.errors import ConfigError, DataError
from seqkit.interfaces import Example
from seqkit.storage import not_a_file

log = logging.getLogger(__name__)

BAD_LINES = ("error", "skip")


@dataclass
class _Reading:
    bad_lines: str
    reported: set[tuple[str, int, str]] = field(default_factory=set)  # warnings given (per run)


_reading: ContextVar[_Reading | None] = ContextVar("seqkit.readers.reading", default=None)


@contextlib.contextmanager
def reading(*, bad_lines: str = "error") -> Iterator[None]:
    """What the readers do with a bad line while examples are iterated inside this block: stop
    with a DataError naming file:line (``"error"``), or skip it and log one warning per file with
    the count and the first problem (``"skip"``). The core sets it around a run from
    ``data.bad_lines``; a task's ``examples()`` built on these readers follows it as it is.

    A reader is a generator: the block must be in force while it is iterated (the policy is read
    when reading starts). A block inside another shares its record of warnings given, so a file
    read several times in one run (checked, fitted, encoded) is reported once."""
    if bad_lines not in BAD_LINES:
        raise ConfigError(f"data.bad_lines: must be 'error' or 'skip', got {bad_lines!r}")
    outer = _reading.get()
    token = _reading.set(_Reading(bad_lines, outer.reported if outer is not None else set()))
    try:
        yield
    finally:
        _reading.reset(token)


class _BadLines:
    """The bad lines of one file under the policy in force: raised at once, or counted and then
    reported once the file is read."""

    def __init__(self, path: Path | str):
        self.path = path
        self.reading = _reading.get()
        self.skip = self.reading is not None and self.reading.bad_lines == "skip"
        self.count = 0
        self.first = ""

    def __call__(self, number: int, problem: str) -> None:
        if not self.skip:
            raise DataError(f"{self.path}:{number}: {problem}")
        self.count += 1
        if not self.first:
            self.first = f"line {number}: {problem}"

    def finish(self, examples: int | None) -> None:
        """Warn of the skipped lines; with ``examples`` (the count read), an error when none was."""
        if examples == 0:
            if self.count:
                raise DataError(f"{self.path}: no readable example: {_lines_count(self.count)} skipped "
                                f"(first: {self.first})")
            raise DataError(f"{self.path}: empty file, no examples")
        if self.count:
            key = (str(self.path), self.count, self.first)
            if key not in self.reading.reported:
                self.reading.reported.add(key)
                log.warning("%s: skipped %s (first: %s)", self.path, _lines_count(self.count), self.first)


def _lines_count(count: int) -> str:
    return f"{count} unreadable line{'s' if count != 1 else ''}"


def escape(text: str) -> str:
    """``text`` as one field of a file read with ``escapes = true``: backslash, tab, newline and
    carriage return written as ``\\\\``, ``\\t``, ``\\n``, ``\\r``."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}
_ESCAPE = re.compile(r"\\(.?)", re.DOTALL)
_ESCAPES_ARE = "escapes are \\t \\n \\r \\\\"


class _BadEscape(ValueError):
    pass


def _unescape(text: str, field_number: int | None = None) -> str:
    """``text`` with its escapes decoded; _BadEscape (the problem) for any other backslash."""
    if "\\" not in text:
        return text

    def decoded(match: re.Match) -> str:
        char = match.group(1)
        if char in _ESCAPES:
            return _ESCAPES[char]
        if char == "":
            ends = f"field {field_number}" if field_number else "the line"
            raise _BadEscape(f"a lone backslash ends {ends}; {_ESCAPES_ARE}")
        shown = f"\\{char}" if char.isprintable() and not char.isspace() else f"\\ before {char!r}"
        in_field = f" in field {field_number}" if field_number else ""
        raise _BadEscape(f"unknown escape {shown}{in_field}; {_ESCAPES_ARE}")

    return _ESCAPE.sub(decoded, text)


def read_tsv(path: Path | str, *, escapes: bool = False) -> Iterator[Example]:
    """``source<TAB>target`` per line; blank lines are skipped. With ``escapes``, ``\\t`` ``\\n``
    ``\\r`` ``\\\\`` in a field are decoded (any other escape is a bad line)."""
    count, bad, name = 0, _BadLines(path), str(path)
    for first, lines, problems in _line_blocks(path):  # (a block at a time: this runs per line)
        for number, line in enumerate(lines, start=first):
            if line is None:
                bad(number, problems[number])
                continue
            fields = line.split("\t")
            if len(fields) != 2 or line.isspace():
                if not line.strip():
                    continue
                bad(number, f"expected 2 TAB-separated fields (source, target), got {len(fields)}")
                continue
            if escapes and "\\" in line:
                try:
                    fields = [_unescape(text, i) for i, text in enumerate(fields, start=1)]
                except _BadEscape as exc:
                    bad(number, str(exc))
                    continue
            count += 1
            yield Example(fields[0], fields[1], f"{name}:{number}")
    bad.finish(count)


def read_parallel(source_path: Path | str, target_path: Path | str, *,
                  escapes: bool = False) -> Iterator[Example]:
    """Line i of ``source_path`` with line i of ``target_path``; both files must have as many lines.
    Empty lines are kept (they pair with the other side), ``where`` names the source file. A bad
    line on either side, when skipped, drops its pair (counted in the file that holds it)."""
    count, source_bad, target_bad = 0, _BadLines(source_path), _BadLines(target_path)
    sources, targets = _lines(source_path, source_bad), _lines(target_path, target_bad)
    lines = 0
    while True:
        source, target = next(sources, None), next(targets, None)
        if source is None and target is None:
            break
        if source is None or target is None:
            ended, other = (source_path, target_path) if source is None else (target_path, source_path)
            raise DataError(f"{source_path} and {target_path} have different numbers of lines: "
                            f"{ended} ends after line {lines}, {other} goes on to line {lines + 1}")
        lines += 1
        texts = []
        for (number, text), bad in ((source, source_bad), (target, target_bad)):
            if text is not None and escapes:
                try:
                    text = _unescape(text)
                except _BadEscape as exc:
                    bad(number, str(exc))
                    text = None
            texts.append(text)
        if None in texts:
            continue
        count += 1
        yield Example(texts[0], texts[1], f"{source_path}:{lines}")
    target_bad.finish(None)
    source_bad.finish(count)


def read_jsonl(path: Path | str, source_key: str | None, target_key: str, *,
               text_keys: Collection[str] = ()) -> Iterator[Example]:
    """One JSON object per line; ``source`` is ``object[source_key]`` (None when ``source_key`` is
    None: language-model text), ``target`` is ``object[target_key]``. Blank lines are skipped.
    The values of ``text_keys`` must be strings (else the line is bad)."""
    count, bad = 0, _BadLines(path)
    for number, line in _lines(path, bad):
        if line is None or not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            bad(number, f"invalid JSON: {exc.msg} at column {exc.colno}")
            continue
        if not isinstance(record, dict):
            bad(number, f"expected a JSON object, got {type(record).__name__}")
            continue
        if problem := _record_problem(record, (source_key, target_key), text_keys):
            bad(number, problem)
            continue
        count += 1
        yield Example(record[source_key] if source_key is not None else None, record[target_key],
                      f"{path}:{number}")
    bad.finish(count)


def _record_problem(record: dict, keys: tuple[str | None, ...], text_keys: Collection[str]) -> str | None:
    for key in keys:
        if key is None:
            continue
        if key not in record:
            return f"missing key {key!r} (keys: {', '.join(map(repr, record))})"
        value = record[key]
        if key in text_keys and not isinstance(value, str):
            shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
            return f"{key} must be text, got {type(value).__name__} {shown}"
    return None


def read_lines(path: Path | str, *, escapes: bool = False) -> Iterator[Example]:
    """Language-model text: each non-blank line is one sequence (the target; no source). With
    ``escapes``, ``\\t`` ``\\n`` ``\\r`` ``\\\\`` are decoded (any other escape is a bad line)."""
    count, bad = 0, _BadLines(path)
    for number, line in _lines(path, bad):
        if line is None or not line.strip():
            continue
        if escapes:
            try:
                line = _unescape(line)
            except _BadEscape as exc:
                bad(number, str(exc))
                continue
        count += 1
        yield Example(None, line, f"{path}:{number}")
    bad.finish(count)


def read_float_sequences(path: Path | str, num_features: int | None = None,
                         num_outputs: int | None = None) -> Iterator[Example]:
    """Sequences of feature vectors with target values, from a ``.npz`` or a ``.csv`` file.

    Each example's source is a list of S feature vectors (lists of F floats), its target a list of
    K floats.

    ``.npz`` (``numpy.savez``; loaded with ``allow_pickle=False``, nothing is unpickled): array
    ``inputs`` of shape (N, S, F) and ``targets`` of shape (N,) or (N, K); an optional integer array
    ``lengths`` (N,) gives the real length of each sequence (the rest is padding). ``where`` is
    ``file:i`` for the i-th example (1-based). ``num_features``/``num_outputs``, when given, must
    match the arrays.

    ``.csv``: one example per row, comma-separated numbers: the K = ``num_outputs`` target values
    first, then the sequence flattened step by step (step 1's F = ``num_features`` values, then step
    2's, ...), so a row holds K + S*F numbers and rows may differ in S (at least one step). Blank
    lines and lines starting with ``#`` are skipped; there is no header. Both numbers default to 1.
    """
    path = Path(path)
    if path.suffix == ".npz":
        return _read_npz(path, num_features, num_outputs)
    if path.suffix == ".csv":
        return _read_csv(path, num_features or 1, num_outputs or 1)
    raise DataError(f"{path}: expected a .npz or .csv file of float sequences")


FLOAT32_MAX = float(np.finfo(np.float32).max)  # models compute in float32: larger values become inf


def _read_csv(path: Path, num_features: int, num_outputs: int) -> Iterator[Example]:
    count, bad = 0, _BadLines(path)
    for number, line in _lines(path, bad):
        if line is None or not line.strip() or line.lstrip().startswith("#"):
            continue
        values, problem = _csv_values(line)
        steps = len(values) - num_outputs
        if problem is None and (steps < num_features or steps % num_features):
            problem = (f"expected {num_outputs} target value(s) and then a multiple of {num_features} "
                       f"feature value(s), got {len(values)} values")
        if problem is not None:
            bad(number, problem)
            continue
        sequence = [values[i:i + num_features] for i in range(num_outputs, len(values), num_features)]
        count += 1
        yield Example(sequence, values[:num_outputs], f"{path}:{number}")
    bad.finish(count)


def _csv_values(line: str) -> tuple[list[float], str | None]:
    """The numbers of a CSV row, or the problem with the first that is not one a float32 holds."""
    values = []
    for column, text in enumerate(line.split(","), start=1):
        try:
            value = float(text)
        except ValueError:
            return values, f"column {column}: {text.strip()!r} is not a number"
        if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
            return values, (f"column {column}: {text.strip()!r} is not a finite number a float32 can hold "
                            "(|x| <= 3.4e38)")
        values.append(value)
    return values, None


def _read_npz(path: Path, num_features: int | None, num_outputs: int | None) -> Iterator[Example]:
    arrays = _load_npz(path)
    inputs, targets, lengths = arrays.get("inputs"), arrays.get("targets"), arrays.get("lengths")
    for name, array in (("inputs", inputs), ("targets", targets)):
        if array is None:
            raise DataError(f"{path}: missing array {name!r} (arrays: {', '.join(arrays) or 'none'})")
        if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
            raise DataError(f"{path}: array {name!r} has dtype {array.dtype}, expected numbers")
    if inputs.ndim != 3:
        raise DataError(f"{path}: inputs has shape {inputs.shape}, expected (N, S, F)")
    if targets.ndim == 1:
        targets = targets[:, None]
    if targets.ndim != 2 or targets.shape[0] != inputs.shape[0]:
        raise DataError(f"{path}: targets has shape {arrays['targets'].shape}, expected ({inputs.shape[0]},) "
                        f"or ({inputs.shape[0]}, K) to match inputs {inputs.shape}")
    if num_features is not None and inputs.shape[2] != num_features:
        raise DataError(f"{path}: inputs has {inputs.shape[2]} features per step, expected {num_features}")
    if num_outputs is not None and targets.shape[1] != num_outputs:
        raise DataError(f"{path}: targets has {targets.shape[1]} values per example, expected {num_outputs}")
    if lengths is None:
        lengths = np.full(inputs.shape[0], inputs.shape[1])
    elif lengths.shape != (inputs.shape[0],) or not np.issubdtype(lengths.dtype, np.integer):
        raise DataError(f"{path}: lengths has shape {lengths.shape} and dtype {lengths.dtype}, "
                        f"expected ({inputs.shape[0]},) integers")
    if inputs.shape[0] == 0:
        raise DataError(f"{path}: empty file, no examples")
    for i in range(inputs.shape[0]):
        where = f"{path}:{i + 1}"
        if not 1 <= lengths[i] <= inputs.shape[1]:
            raise DataError(f"{where}: length {lengths[i]} is not in [1, {inputs.shape[1]}]")
        source, target = inputs[i, :lengths[i]], targets[i]
        if not all(np.isfinite(a).all() and (np.abs(a) <= FLOAT32_MAX).all() for a in (source, target)):
            raise DataError(f"{where}: inputs or targets hold a NaN, an infinity or a number beyond "
                            "float32's range (|x| <= 3.4e38)")
        yield Example(source.astype(np.float32).tolist(), target.astype(np.float32).tolist(), where)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: cannot read as .npz: {str(exc).splitlines()[0]}") from None


def is_pattern(name: str) -> bool:
    """Whether a file name is a glob pattern (holds *, ? or [): a split's shards."""
    return any(char in name for char in "*?[")


MAX_LINE_BYTES = 64 << 20  # one example per line: a longer "line" is not text data (/dev/zero, a binary)


_BLOCK = 1 << 20  # bytes read at a time


def _lines(path: Path | str, bad: _BadLines) -> Iterator[tuple[int, str | None]]:
    """(line number, text without its newline) for each line of ``path``, a regular file (a
    device or a pipe could be endless); the text is None for a line that is not UTF-8 or longer
    than MAX_LINE_BYTES, after ``bad`` was told (it raises, or counts and the line is skipped)."""
    for first, lines, problems in _line_blocks(path):
        for number, line in enumerate(lines, start=first):
            if line is None:
                bad(number, problems[number])
            yield number, line


def _line_blocks(path: Path | str) -> Iterator[tuple[int, list[str | None], dict[int, str]]]:
    """The lines of ``path`` as :func:`_lines` gives them, a block at a time: (number of the
    block's first line, its lines, the problem of each bad line by number). A block is read and
    decoded at once, and line by line only where one of its lines is bad."""
    try:
        if (kind := not_a_file(path)) is not None:  # before open: opening a pipe waits for a writer
            raise DataError(f"{path}: {kind}, not a data file")
        handle = open(path, "rb")  # bytes, so that a decoding error can name its line
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror}") from None
    with handle:
        number, rest, skipping = 0, b"", False  # lines given; a line's start; reading past a long one
        while data := handle.read(_BLOCK):
            if skipping:
                end = data.find(b"\n")
                if end < 0:
                    continue
                data, skipping = data[end + 1:], False
            data = rest + data
            cut = data.rfind(b"\n") + 1
            rest = data[cut:]
            if cut:
                lines, problems = _decoded(data[:cut - 1], number, MAX_LINE_BYTES)
                yield number + 1, lines, problems
                number += len(lines)
            if len(rest) > MAX_LINE_BYTES:  # too long already, its end not read yet
                number += 1
                yield number, [None], {number: _too_long()}
                rest, skipping = b"", True
        if rest:  # the last line, without a newline
            yield number + 1, *_decoded(rest, number, MAX_LINE_BYTES + 1)


def _too_long() -> str:
    return f"a line longer than {MAX_LINE_BYTES >> 20} MiB; is this a text file of one example per line?"


def _decoded(block: bytes, before: int, limit: int) -> tuple[list[str | None], dict[int, str]]:
    """The lines of ``block`` (lines ``before`` + 1, ...; newlines between them), each decoded,
    without a final carriage return (nor a byte-order mark on line 1); None for a line of
    ``limit`` bytes or more (a line and its newline longer than MAX_LINE_BYTES) or not UTF-8,
    with its problem by line number."""
    problems: dict[int, str] = {}
    try:
        lines: list[str | None] = block.decode("utf-8").split("\n")
        if len(block) >= limit and max(map(len, block.split(b"\n"))) >= limit:
            raise ValueError("a line is too long")
    except ValueError:  # (UnicodeDecodeError is one) line by line, naming the bad ones
        lines = []
        for number, raw in enumerate(block.split(b"\n"), start=before + 1):
            text = None
            if len(raw) >= limit:
                problems[number] = _too_long()
            else:
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    problems[number] = f"not UTF-8 text (byte {exc.start + 1})"
            lines.append(text)
    if before == 0 and lines[0] is not None:
        lines[0] = lines[0].removeprefix("\ufeff")  # a byte-order mark is not part of the data
    if b"\r" in block:
        lines = [line.removesuffix("\r") if line is not None else None for line in lines]
    return lines, problems
