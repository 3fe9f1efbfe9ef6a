"""The cache of prepared data: where a task's prepared files live and what names them.

    <cache>/<task>-<data key>/task_state.json        the task's fitted state (its tokenizers); its
                                                      time says when the folder was last used
    <cache>/<task>-<data key>/about.json             the task and the files it was made from
    <cache>/<task>-<data key>/<encoding key>/        a prepared split (seqkit.prepared)

The data key is a hash of the task's name and options with every file option replaced by the
SHA-256 of the file's contents (so moving the data or another config over the same data reuses it),
of the settings that change what is read (``data.bad_lines``, ``data.fit_examples``), and of the
code that reads and encodes (seqkit's and the task plugin's Python files): a changed data file or
changed code has another key, so stale data are never found. The encoding key adds the task state
and the ``[data]`` length limits.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import seqkit
from seqkit.convert import to_toml_data
from seqkit.errors import StorageError
from seqkit.prepared import FORMAT, PreparedSplit, file_digest, open_split, write_folder
from seqkit.readers import is_pattern

log = logging.getLogger(__name__)


def cache_root() -> Path:
    """Where prepared data live: $SEQKIT_CACHE, else $XDG_CACHE_HOME/seqkit, else ~/.cache/seqkit."""
    if os.environ.get("SEQKIT_CACHE"):
        return Path(os.environ["SEQKIT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "seqkit"


# -- keys ---------------------------------------------------------------------------------------


def fingerprint(value: Path) -> Any:
    """What a file option names, by content: a file's SHA-256; a folder's files (recursively); a
    glob pattern (``data/part-*.tsv``: shards) every file it matches, and every file of a prefix it
    matches; a prefix (``data/train`` of format "parallel") the files ``data/train.*``; else
    "missing". Adding, removing or changing a shard changes it."""
    if is_pattern(value.name) and value.parent.is_dir():
        matches = {p for pattern in (value.name, f"{value.name}.*") for p in value.parent.glob(pattern)}
        files = sorted(p for p in matches if p.is_file())
        return {p.name: file_digest(p) for p in files} if files else "missing"
    if value.is_file():
        return file_digest(value)
    if value.is_dir():
        files = sorted(p for p in value.rglob("*") if p.is_file())
        return {str(p.relative_to(value)): file_digest(p) for p in files}
    siblings = sorted(value.parent.glob(f"{value.name}.*")) if value.parent.is_dir() else []
    siblings = [p for p in siblings if p.is_file()]
    if siblings:
        return {p.name[len(value.name):]: file_digest(p) for p in siblings}
    return "missing"


def data_key(task_name: str, options: Any, extra: dict[str, Any] | None = None,
             code: tuple[str, ...] = ()) -> str:
    """The hash that names the prepared data of a task over its data files (see the module doc);
    ``extra``: other settings that change what is read (``data.bad_lines``); ``code``: the
    top-level packages whose code reads and encodes (seqkit's own always counts)."""
    described = {"format": FORMAT, "seqkit": seqkit.__version__, "task": task_name,
                 "options": _by_content(options), "extra": extra or {},
                 "code": [code_digest(package) for package in sorted({"seqkit", *code})]}
    return _hash(described)


@functools.cache
def code_digest(package: str) -> str:
    """SHA-256 over the Python files of a top-level package (its name and every .py file's
    contents): the code that reads and encodes the data, so that changed code never meets data
    prepared by the code before it, version number or not. A few milliseconds."""
    digest = hashlib.sha256(package.encode())
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return digest.hexdigest()
    roots = list(spec.submodule_search_locations or [])
    files = sorted(p for root in roots for p in Path(root).rglob("*.py")) if roots else \
        [Path(spec.origin)] if spec.origin and Path(spec.origin).is_file() else []
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _by_content(options: Any) -> Any:
    if options is None:
        return None
    fields = dataclasses.fields(options) if dataclasses.is_dataclass(options) else ()
    data = {}
    for f in fields:
        value = getattr(options, f.name)
        data[f.name] = ({"file": fingerprint(value)} if isinstance(value, Path)
                        else to_toml_data(value))
    return data


def _hash(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


# -- the data of one task -----------------------------------------------------------------------

Encoder = Any  # (task, split, data config, stats) -> iterator of (source, target, where)


@dataclass
class Prepared:
    """The prepared data of one task over its data files: its fitted state and its encodings."""

    root: Path
    task_name: str
    key: str
    files: dict[str, str] = dataclasses.field(default_factory=dict)  # file options, for `seqkit cache list`

    @classmethod
    def of(cls, task_name: str, options: Any, root: Path | None = None,
           extra: dict[str, Any] | None = None, code: tuple[str, ...] = ()) -> Prepared:
        root = Path(root) if root is not None else cache_root()
        files = {field.name: str(value) for field in dataclasses.fields(options)
                 if isinstance(value := getattr(options, field.name), Path)} \
            if dataclasses.is_dataclass(options) else {}
        return cls(root, task_name, data_key(task_name, options, extra, code), files)

    @property
    def folder(self) -> Path:
        return self.root / f"{self.task_name}-{self.key}"

    def state(self) -> dict[str, Any] | None:
        """The task state fitted on this data before (None: not yet, or unreadable)."""
        path = self.folder / "task_state.json"
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("prepared task state %s unreadable (%s): fitting again", path, exc)
            return None
        try:
            os.utime(path)  # used now: `seqkit cache clean` removes what has not been for long
        except OSError:
            pass  # (a read-only cache)
        return state if isinstance(state, dict) else None

    def ready(self, data: Any) -> bool:
        """Whether the train split was prepared from this data before (with the fitted state kept
        here and the ``[data]`` limits of ``data``): its files were read then, whole."""
        state = self.state()
        return state is not None and (self.encoding(state, data) / "manifest.json").is_file()

    def save_state(self, state: dict[str, Any]) -> None:
        from seqkit.storage import atomic_write, make_folder

        make_folder(self.folder)
        about = {"task": self.task_name, "files": self.files, "seqkit": seqkit.__version__}
        atomic_write(self.folder / "about.json", json.dumps(about).encode())
        atomic_write(self.folder / "task_state.json", json.dumps(state).encode())

    def encoding(self, state: dict[str, Any], data: Any) -> Path:
        """The folder of the encoding made with task ``state`` under the ``[data]`` limits."""
        limits = {name: getattr(data, name) for name in ("max_source_len", "max_target_len", "too_long")}
        return self.folder / _hash({"state": state, "limits": limits})

    def split(self, task: Any, split: str, data: Any, encode: Encoder) -> PreparedSplit:
        """``split`` of ``task`` prepared: opened when it exists (and is whole), else encoded with
        ``encode`` and written first."""
        folder = self.encoding(task.state_dict(), data)
        found = open_split(folder, split)
        if found is not None:
            return found
        stats: dict[str, int] = {}
        shape = task.model_shape()
        vocab = {"source": shape.source_vocab, "target": shape.target_vocab or shape.num_outputs}
        made_from = {"task": self.task_name, "data_key": self.key, "limits": folder.name}
        write_folder(folder, split, encode(task, split, data, stats), stats, vocab, made_from)
        found = open_split(folder, split, verify=False)  # hashed as written, for the manifest
        if found is None:
            raise StorageError(f"{folder}: prepared data just written cannot be read back")
        return found
