"""Every file operation of a run folder, named, so that a test can stop the process or fail the
operation at each one (SQLite-style crash testing), and so that every failure is one line naming
the file.

A write is atomic: a temporary file ``.NAME.XXXXXXXX.tmp`` in the same folder, written, fsynced,
renamed over NAME, then the folder fsynced; a crash leaves the old file or the new one, never a mix.
Only temporaries of that shape are ever cleaned up (``is_temporary``): seqkit deletes only files it
made. The operations a run performs, in the order they happen, are the injection points: ``write``
(the temporary file's bytes), ``fsync``, ``rename``, ``fsync_dir``, ``append``, ``unlink``.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from seqkit.errors import StorageError

# Called before each operation with (operation, path); tests set it to inject a crash or an error.
fault: Callable[[str, Path], None] | None = None

_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def _point(operation: str, path: Path) -> None:
    if fault is not None:
        fault(operation, path)


def _failed(path: Path, action: str, exc: OSError) -> StorageError:
    reason = exc.strerror or type(exc).__name__
    return StorageError(f"{path}: cannot {action}: {reason}")


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one."""
    _atomic(Path(path), lambda f: f.write(data))


def atomic_copy(source: Path, path: Path) -> None:
    """Copy ``source`` to ``path`` as ``atomic_write`` writes, without holding it in memory."""
    try:
        src = Path(source).open("rb")
    except OSError as exc:
        raise _failed(Path(source), "read", exc) from None
    with src:
        _atomic(Path(path), lambda f: shutil.copyfileobj(src, f, 1 << 20))


def _atomic(path: Path, write) -> None:
    make_folder(path.parent)
    if (kind := not_a_file(path)) is not None:  # a rename would replace a folder or a device node
        raise StorageError(f"{path}: cannot write: {kind}")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _failed(path, "write", exc) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file a normal mode
        with os.fdopen(fd, "wb") as f:
            _point("write", path)
            write(f)
            f.flush()
            _point("fsync", path)
            os.fsync(f.fileno())
        _point("rename", path)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _failed(path, "write", exc) from None
    except Exception:
        Path(tmp).unlink(missing_ok=True)
        raise
    # anything else (a crash the tests simulate, a second Ctrl-C) leaves the temporary file, as a
    # killed process would; the next run removes it
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    try:
        _point("fsync_dir", folder)
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError as exc:
        raise _failed(folder, "sync", exc) from None
    try:
        os.fsync(dir_fd)
    except OSError as exc:
        raise _failed(folder, "sync", exc) from None
    finally:
        os.close(dir_fd)



def append(path: Path, text: str) -> None:
    """Append ``text`` to ``path`` (one write; a torn last line is dropped when a run resumes)."""
    try:
        _point("append", path)
        with Path(path).open("a", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise _failed(path, "write", exc) from None


def unlink(path: Path) -> None:
    """Remove ``path`` if it exists."""
    if not Path(path).exists():
        return
    try:
        _point("unlink", path)
        Path(path).unlink(missing_ok=True)
    except OSError as exc:
        raise _failed(path, "remove", exc) from None


def make_folder(path: Path) -> None:
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StorageError(f"{path}: cannot create the folder: a file of that name is in the way") from None
    except OSError as exc:
        raise _failed(path, "create the folder", exc) from None


def not_a_file(path: Path | str) -> str | None:
    """Why ``path`` cannot be read as a file ("a folder", "a device, pipe or socket"), or None when
    it is a regular file or does not exist. Checked before opening: opening a pipe waits for a
    writer, and a device can be endless."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # missing or unreadable: opening it says which
    if stat.S_ISREG(mode):
        return None
    return "a folder" if stat.S_ISDIR(mode) else "a device, pipe or socket"


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is a temporary file this module makes (and may therefore delete)."""
    return bool(_TEMPORARY.match(Path(path).name))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
