"""Line-by-line readers of data files into :class:`seqkit.interfaces.Example`.

Every reader is a generator (files are read lazily) and every example names its origin in
``where`` as ``file:line``. Every problem is a :class:`seqkit.errors.DataError` with one line that
names the file (and line) and what is wrong. Text files are UTF-8; a trailing newline ("\\n" or
"\\r\\n") is not part of a line. A file that yields no example is an error.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from seqkit.errors import DataError
from seqkit.interfaces import Example
from seqkit.storage import not_a_file


def read_tsv(path: Path | str) -> Iterator[Example]:
    """``source<TAB>target`` per line; blank lines are skipped."""
    count = 0
    for where, line in _lines(path):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise DataError(f"{where}: expected 2 TAB-separated fields (source, target), got {len(fields)}")
        count += 1
        yield Example(fields[0], fields[1], where)
    _check_not_empty(path, count)


def read_parallel(source_path: Path | str, target_path: Path | str) -> Iterator[Example]:
    """Line i of ``source_path`` with line i of ``target_path``; both files must have as many lines.
    Empty lines are kept (they pair with the other side), ``where`` names the source file."""
    count = 0
    sources, targets = _lines(source_path), _lines(target_path)
    while True:
        source, target = next(sources, None), next(targets, None)
        if source is None and target is None:
            break
        if source is None or target is None:
            ended, other = (source_path, target_path) if source is None else (target_path, source_path)
            raise DataError(f"{source_path} and {target_path} have different numbers of lines: "
                            f"{ended} ends after line {count}, {other} goes on to line {count + 1}")
        count += 1
        yield Example(source[1], target[1], source[0])
    _check_not_empty(source_path, count)


def read_jsonl(path: Path | str, source_key: str | None, target_key: str) -> Iterator[Example]:
    """One JSON object per line; ``source`` is ``object[source_key]`` (None when ``source_key`` is
    None: language-model text), ``target`` is ``object[target_key]``. Blank lines are skipped."""
    count = 0
    for where, line in _lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: invalid JSON: {exc.msg} at column {exc.colno}") from None
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
        for key in (source_key, target_key):
            if key is not None and key not in record:
                raise DataError(f"{where}: missing key {key!r} (keys: {', '.join(map(repr, record))})")
        count += 1
        yield Example(record[source_key] if source_key is not None else None, record[target_key], where)
    _check_not_empty(path, count)


def read_lines(path: Path | str) -> Iterator[Example]:
    """Language-model text: each non-blank line is one sequence (the target; no source)."""
    count = 0
    for where, line in _lines(path):
        if line.strip():
            count += 1
            yield Example(None, line, where)
    _check_not_empty(path, count)


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
    count = 0
    for where, line in _lines(path):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        values = []
        for column, text in enumerate(line.split(","), start=1):
            try:
                value = float(text)
            except ValueError:
                raise DataError(f"{where}: column {column}: {text.strip()!r} is not a number") from None
            if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
                raise DataError(f"{where}: column {column}: {text.strip()!r} is not a finite number "
                                "a float32 can hold (|x| <= 3.4e38)")
            values.append(value)
        steps = len(values) - num_outputs
        if steps < num_features or steps % num_features:
            raise DataError(f"{where}: expected {num_outputs} target value(s) and then a multiple of "
                            f"{num_features} feature value(s), got {len(values)} values")
        sequence = [values[i:i + num_features] for i in range(num_outputs, len(values), num_features)]
        count += 1
        yield Example(sequence, values[:num_outputs], where)
    _check_not_empty(path, count)


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


MAX_LINE_BYTES = 64 << 20  # one example per line: a longer "line" is not text data (/dev/zero, a binary)


def _lines(path: Path | str) -> Iterator[tuple[str, str]]:
    """(``file:line``, text without its newline) for each line of ``path``, a regular file (a
    device or a pipe could be endless), lines of at most MAX_LINE_BYTES."""
    try:
        if (kind := not_a_file(path)) is not None:  # before open: opening a pipe waits for a writer
            raise DataError(f"{path}: {kind}, not a data file")
        handle = open(path, "rb")  # bytes, so that a decoding error can name its line
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror}") from None
    with handle:
        number = 0
        while raw := handle.readline(MAX_LINE_BYTES + 1):
            number += 1
            if len(raw) > MAX_LINE_BYTES:
                raise DataError(f"{path}:{number}: a line longer than {MAX_LINE_BYTES >> 20} MiB; "
                                "is this a text file of one example per line?")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{number}: not UTF-8 text (byte {exc.start + 1})") from None
            if number == 1:
                text = text.removeprefix("\ufeff")  # a byte-order mark is not part of the data
            yield f"{path}:{number}", text.removesuffix("\n").removesuffix("\r")


def _check_not_empty(path: Path | str, count: int) -> None:
    if count == 0:
        raise DataError(f"{path}: empty file, no examples")
