"""Prepared data: a split encoded once into binary files, shared by every later run, resume and
process of the machine (where they live and what names them: ``seqkit.data_cache``).

The layout follows fairseq's and Megatron's indexed datasets and nanoGPT's token files: per field
(source, target) one flat array of every example's values (``.bin``, the smallest dtype that holds
them: uint16 token ids below 65,536) and one int64 array of offsets (``.idx``, n + 1 entries), plus
each example's size in a batch (``.sizes``, memory-mapped). Rows are read with ``pread``: processes
share the page cache instead of each holding a copy, and none maps the files' pages into its own
memory. A JSON manifest says what the files hold and what
they were made from. Files are checked against the manifest's sizes and SHA-256 when opened: a
damaged folder is reported and prepared again. A folder is written under a temporary name and
renamed into place, so a reader never sees half of one, and two processes preparing the same data
at once each finish and one folder wins.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

import seqkit
from seqkit.data import collate
from seqkit.errors import DataError, StorageError
from seqkit.interfaces import Batch, EncodedExample
from seqkit.ragged import TokenArrays

log = logging.getLogger(__name__)

FORMAT = 2  # of the files below; a change makes every earlier folder unused
FIELDS = ("source", "target")
CHUNK_BYTES = 16 << 20  # written to disk in pieces of about this size


def file_digest(path: Path) -> str:
    """SHA-256 of a file's contents (about 1 GB/s)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


# -- writing ------------------------------------------------------------------------------------


class _FieldWriter:
    """Appends one field's rows to ``<stem>.bin`` and their offsets to ``<stem>.idx``."""

    def __init__(self, stem: Path, vocab: int | None):
        self.stem, self.vocab = stem, vocab
        self.bin = open(f"{stem}.bin", "wb")
        self.idx = open(f"{stem}.idx", "wb")
        self.idx.write(np.zeros(1, dtype=np.int64).tobytes())
        self.count = 0  # values written (rows of the trailing shape)
        self.rows = 0
        self.meta: dict[str, Any] | None = None
        self.pending: list[np.ndarray] = []
        self.offsets: list[int] = []
        self.pending_bytes = 0

    def add(self, value: Tensor, where: str) -> None:
        scalar = value.dim() == 0
        rows = value.reshape(1) if scalar else value
        meta = {"dtype": str(value.dtype).removeprefix("torch."), "trailing": list(rows.shape[1:]),
                "scalar": scalar}
        if self.meta is None:
            self.meta = {**meta, "store": self._store_dtype(value)}
        elif {k: self.meta[k] for k in meta} != meta:
            raise DataError(f"{where}: the task encoded a {self.stem.name.partition('.')[2]} of dtype "
                            f"{meta['dtype']}, shape {tuple(value.shape)}, unlike the examples before "
                            f"it ({self.meta['dtype']}, rows of {tuple(self.meta['trailing'])})")
        self._append(rows.numpy(), np.array([len(rows)]), where)

    def add_arrays(self, arrays: TokenArrays, where: str) -> None:
        """Many rows of token ids at once (int64, as ``add`` stores a token tensor)."""
        if self.meta is None:
            self.meta = {"dtype": "int64", "trailing": [], "scalar": False,
                         "store": self._store_dtype(torch.zeros(0, dtype=torch.long))}
        elif (self.meta["dtype"], self.meta["trailing"], self.meta["scalar"]) != ("int64", [], False):
            raise DataError(f"{where}: token ids after rows of {self.meta['dtype']}")
        self._append(arrays.ids, arrays.lengths, where)

    def _append(self, values: np.ndarray, lengths: np.ndarray, where: str) -> None:
        """Rows of ``lengths`` values each, ``values`` concatenated; token ids must fit the vocabulary."""
        limit = self.vocab if self.meta["store"] in ("uint16", "int32") else None
        if limit is not None and values.size and (values.min() < 0 or values.max() >= limit):
            bad = int(values.max() if values.max() >= limit else values.min())
            raise DataError(f"{where}: the task encoded token id {bad}, outside its vocabulary of "
                            f"{limit} (model_shape()) for the {self.stem.name.partition('.')[2]}")
        array = values.astype(self.meta["store"], copy=False)
        self.offsets.extend((self.count + np.cumsum(lengths)).tolist())
        self.count += len(array)
        self.rows += len(lengths)
        self.pending.append(array)
        self.pending_bytes += array.nbytes
        if self.pending_bytes >= CHUNK_BYTES:
            self.flush()

    def _store_dtype(self, value: Tensor) -> str:
        if value.is_floating_point():
            return str(value.dtype).removeprefix("torch.")
        if value.dtype == torch.bool:
            return "bool"
        return "uint16" if self.vocab is not None and self.vocab <= 65536 else "int32" \
            if self.vocab is not None and self.vocab < 2**31 else "int64"

    def flush(self) -> None:
        if self.pending:
            self.bin.write(b"".join(a.tobytes() for a in self.pending))
            self.idx.write(np.asarray(self.offsets, dtype=np.int64).tobytes())
        self.pending, self.offsets, self.pending_bytes = [], [], 0

    def close(self) -> dict[str, Any]:
        self.flush()
        for handle in (self.bin, self.idx):
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
        return {**(self.meta or {}), "rows": self.rows, "values": self.count}


def write_split(folder: Path, split: str, items: Iterable[tuple[Tensor | None, Tensor, str]],
                vocab: dict[str, int | None]) -> dict[str, Any]:
    """Write (source, target, where) items as ``split``'s fields in ``folder``; their metadata."""
    writers: dict[str, _FieldWriter] = {}
    try:
        for source, target, where in items:  # an example's tensors, or many examples' TokenArrays
            for name, value in (("source", source), ("target", target)):
                if value is None:
                    continue
                if name not in writers:
                    writers[name] = _FieldWriter(folder / f"{split}.{name}", vocab.get(name))
                if isinstance(value, TokenArrays):
                    writers[name].add_arrays(value, where)
                else:
                    writers[name].add(value, where)
    finally:
        fields = {name: writer.close() for name, writer in writers.items()}
    return fields


# -- reading ------------------------------------------------------------------------------------


class _Field:
    """One field of a prepared split. Rows are read with ``pread`` into buffers of their own: the
    bytes come from the page cache, which every process of the machine shares, and nothing is
    mapped into the process, so its memory does not grow with the corpus (a memory map would keep
    every page it touched, and the pages around them, in the process's resident set)."""

    def __init__(self, stem: Path, meta: dict[str, Any]):
        self.meta = meta
        self.bin, self.idx = Path(f"{stem}.bin"), Path(f"{stem}.idx")
        self.trailing = tuple(meta["trailing"])
        self.store = np.dtype(meta["store"])
        self.value_bytes = self.store.itemsize * int(np.prod(self.trailing, dtype=np.int64))
        self.dtype = getattr(torch, meta["dtype"])
        expected_bytes = {self.bin: meta["values"] * self.value_bytes, self.idx: (meta["rows"] + 1) * 8}
        for path, expected in expected_bytes.items():
            try:
                found = path.stat().st_size
            except OSError as exc:
                raise _Damaged(f"{path.name}: {exc.strerror}") from None
            if found != expected:
                raise _Damaged(f"{path.name} has {found} bytes, its rows need {expected}")

    def rows(self, indices: Iterable[int]) -> list[Tensor]:
        """The rows at ``indices``, each a tensor of its own."""
        values = []
        with open(self.idx, "rb", buffering=0) as idx, open(self.bin, "rb", buffering=0) as data:
            for i in indices:
                start, end = np.frombuffer(_read(idx, 16, 8 * i), dtype=np.int64).tolist()
                array = np.frombuffer(_read(data, (end - start) * self.value_bytes, start * self.value_bytes),
                                      dtype=self.store).reshape(-1, *self.trailing)
                value = torch.from_numpy(array).to(self.dtype)
                values.append(value.reshape(()) if self.meta["scalar"] else value)
        return values


def _read(handle: Any, size: int, offset: int) -> bytearray:
    """``size`` bytes of ``handle`` at ``offset``, in a buffer of their own (writable, for torch)."""
    buffer = bytearray(size)
    if size and os.preadv(handle.fileno(), [buffer], offset) != size:
        raise DataError(f"{handle.name}: shorter than its manifest says (changed while in use?)")
    return buffer


@dataclass
class PreparedSplit:
    """A split read from prepared files: what the trainer needs of an EncodedSplit (sizes,
    token count, batches), without a Python object per example."""

    split: str
    folder: Path
    stats: dict[str, int]
    fields: dict[str, _Field]
    _sizes: np.ndarray

    def __len__(self) -> int:
        return self.fields["target"].meta["rows"]

    @property
    def sizes(self) -> np.ndarray:
        """What each example costs in a padded batch, max(source length, target length): read
        from ``<split>.sizes`` (written when prepared, four bytes an example)."""
        return self._sizes

    @property
    def tokens(self) -> int:
        """Token ids in the split: sources (not float features) and target sequences."""
        source, target = self.fields.get("source"), self.fields["target"].meta
        return (0 if source is None or self.features else source.meta["values"]) + \
            (target["values"] if _is_sequence(target) else 0)

    @property
    def features(self) -> bool:
        """Whether sources are feature vectors (not token ids)."""
        source = self.fields.get("source")
        return source is not None and source.dtype.is_floating_point

    def __getitem__(self, index: int) -> EncodedExample:
        return self.examples([index])[0]

    def examples(self, indices: list[int]) -> list[EncodedExample]:
        source = self.fields.get("source")
        sources = source.rows(indices) if source is not None else [None] * len(indices)
        targets = self.fields["target"].rows(indices)
        return [EncodedExample(source, target) for source, target in zip(sources, targets, strict=True)]

    def batch(self, indices: Iterable[int]) -> Batch:
        indices = list(indices)
        return collate(self.examples(indices), indices)


# -- the folder ---------------------------------------------------------------------------------


def _manifest(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise _Damaged(f"manifest.json: {exc}") from None


class _Damaged(Exception):
    """What is wrong with a prepared folder."""


def _verify(folder: Path, manifest: dict[str, Any]) -> None:
    for name, expected in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise _Damaged(f"{name} is missing")
        if path.stat().st_size != expected["bytes"]:
            raise _Damaged(f"{name} has {path.stat().st_size} bytes, the manifest says {expected['bytes']}")
        if file_digest(path) != expected["sha256"]:
            raise _Damaged(f"{name} does not match its checksum")


def open_split(folder: Path, split: str, verify: bool = True) -> PreparedSplit | None:
    """The prepared ``split`` in ``folder``; None when there is none. A damaged folder is removed
    (with a warning saying what was wrong), so that it is prepared again. ``verify=False`` is for
    a folder just checked or written by this run (rank 0's, or this process's own): its files are
    not read through for their SHA-256 again, and a fault leaves the folder to its writer."""
    try:
        manifest = _manifest(folder)
        if manifest is None or split not in manifest.get("splits", {}):
            return None
        if manifest.get("format") != FORMAT:
            raise _Damaged(f"format {manifest.get('format')}, this seqkit reads {FORMAT}")
        if verify:
            _verify(folder, manifest)
        entry = manifest["splits"][split]
        fields = {name: _Field(folder / f"{split}.{name}", meta) for name, meta in entry["fields"].items()}
        rows = entry["fields"]["target"]["rows"]
        sizes = np.memmap(folder / f"{split}.sizes", dtype=entry["sizes"], mode="r", shape=(rows,)) \
            if rows else np.zeros(0, dtype=entry["sizes"])
    except (_Damaged, KeyError, TypeError, ValueError) as exc:
        if not verify:
            return None
        log.warning("prepared data %s damaged (%s): preparing it again", folder, exc)
        remove(folder)
        return None
    return PreparedSplit(split, folder, entry["stats"], fields, sizes)


def write_folder(folder: Path, split: str, items: Iterator[tuple[Tensor | None, Tensor, str]],
                 stats: dict[str, int], vocab: dict[str, int | None], made_from: dict[str, Any]) -> None:
    """Prepare ``split`` into ``folder``: written under a temporary name beside it, then renamed
    into place; when another process got there first, its folder is kept."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = folder.with_name(f"{folder.name}.tmp-{uuid.uuid4().hex[:8]}")
    temporary.mkdir()
    try:
        fields = write_split(temporary, split, items, vocab)
        sizes = _write_sizes(temporary, split, fields)
        files = {p.name: {"bytes": p.stat().st_size, "sha256": file_digest(p)}
                 for p in sorted(temporary.iterdir())}
        manifest = {"format": FORMAT, "seqkit": seqkit.__version__, "made_from": made_from,
                    "splits": {split: {"stats": dict(stats), "fields": fields, "sizes": sizes}},
                    "files": files}
        (temporary / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        try:
            temporary.rename(folder)
        except OSError:
            if not (folder / "manifest.json").is_file():
                raise
            log.info("prepared data %s: another process finished it first", folder)
    except OSError as exc:
        raise StorageError(f"{folder}: cannot write prepared data: {exc.strerror or exc}") from None
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)


def _is_sequence(meta: dict[str, Any]) -> bool:
    """A field of token-id sequences (not class indices, values or feature vectors)."""
    return not meta["scalar"] and not meta["trailing"] and not meta["dtype"].startswith(("float", "bfloat"))


def _write_sizes(folder: Path, split: str, fields: dict[str, Any]) -> str:
    """``<split>.sizes``: each example's max(source length, target length) as EncodedSplit.sizes
    counts it (a target that is a class or values counts 0), computed from the offsets a million
    examples at a time; returns its dtype."""
    rows = fields["target"]["rows"]

    def lengths(name: str, start: int, stop: int) -> np.ndarray:
        meta = fields.get(name)
        if meta is None or (name == "target" and not _is_sequence(meta)):
            return np.zeros(stop - start, dtype=np.int64)
        offsets = np.fromfile(folder / f"{split}.{name}.idx", dtype=np.int64, count=stop - start + 1,
                              offset=8 * start)
        return np.diff(offsets)

    dtype = "int32"
    with open(folder / f"{split}.sizes", "wb") as handle:
        for start in range(0, rows, 1 << 20):
            stop = min(start + (1 << 20), rows)
            handle.write(np.maximum(lengths("source", start, stop), lengths("target", start, stop))
                         .astype(dtype).tobytes())
        handle.flush()
        os.fsync(handle.fileno())
    return dtype


def remove(folder: Path) -> None:
    try:
        shutil.rmtree(folder)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise StorageError(f"{folder}: damaged prepared data that cannot be removed: "
                           f"{exc.strerror or exc}") from None
