"""What the cache of prepared data holds, and removing what is no longer used (``seqkit cache``).

Each folder ``<cache>/<task>-<data key>`` holds one task's fitted state and its prepared splits
(``seqkit.data_cache``). Its ``task_state.json`` is touched at every start that uses it, so its
modification time says when it was last used; ``about.json`` says which files it was made from. A
new data file, another seqkit version or changed code makes a new folder and leaves the old one
unused: that is what ``clean`` removes.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqkit.data_cache import cache_root
from seqkit.errors import StorageError

DAY = 86400.0


@dataclass
class CacheFolder:
    folder: Path
    task: str
    files: dict[str, str]  # the task's file options when it was made (what a user recognises)
    bytes: int
    last_used: float  # seconds since the epoch
    encodings: int  # prepared encodings (a config's [data] limits each)

    def as_dict(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "task": self.task, "files": self.files, "bytes": self.bytes,
                "last_used": self.last_used, "encodings": self.encodings}


def cache_folders(root: Path | None = None) -> list[CacheFolder]:
    """The folders of the cache, least recently used first."""
    root = Path(root) if root is not None else cache_root()
    found = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        state = folder / "task_state.json"
        if not folder.is_dir() or "-" not in folder.name:
            continue
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        if not files:
            continue
        about = _about(folder)
        last_used = state.stat().st_mtime if state.is_file() else max(p.stat().st_mtime for p in files)
        found.append(CacheFolder(folder, about.get("task") or folder.name.rsplit("-", 1)[0],
                                 about.get("files") or {}, sum(p.stat().st_size for p in files), last_used,
                                 sum(1 for p in folder.iterdir() if (p / "manifest.json").is_file())))
    return sorted(found, key=lambda entry: entry.last_used)


def clean(root: Path | None = None, unused_days: float | None = None, everything: bool = False,
          dry_run: bool = False) -> list[CacheFolder]:
    """Remove the folders not used for ``unused_days`` days (or every folder, with
    ``everything``); returns them. With ``dry_run`` nothing is removed."""
    if (unused_days is None) == (not everything):
        raise ValueError("clean: give unused_days or everything")
    cutoff = time.time() - (unused_days or 0.0) * DAY
    removed = [entry for entry in cache_folders(root) if everything or entry.last_used < cutoff]
    for entry in removed if not dry_run else ():
        try:
            shutil.rmtree(entry.folder)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StorageError(f"{entry.folder}: cannot remove: {exc.strerror or exc}") from None
    return removed


def _about(folder: Path) -> dict[str, Any]:
    try:
        about = json.loads((folder / "about.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return about if isinstance(about, dict) else {}
