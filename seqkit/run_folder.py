"""The layout of a run folder, the metadata saved with every model, and the rules that keep a run
folder trustworthy: one writer at a time (a lock), only seqkit's own files touched, a stored config
that says what ran.

RUN/config.toml                                  the resolved config of the run
RUN/metrics.jsonl                                one JSON object per log line or evaluation
RUN/checkpoints/step-0000400.safetensors         model weights + metadata
RUN/checkpoints/step-0000400.trainer.safetensors optimizer, RNG, step, data position
RUN/best.safetensors                             the best model so far (by train.best_metric)
RUN/.seqkit.lock                                 held by the process writing the run; marks the folder
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from seqkit import checkpoint as ckpt
from seqkit import storage
from seqkit.config import RunConfig, config_to_toml, tomllib
from seqkit.convert import to_toml_data
from seqkit.errors import CheckpointError, RunFolderError
from seqkit.interfaces import Task
from seqkit.plugins import PluginManager

_STEP = re.compile(r"^step-(\d+)\.safetensors$")
_OWN = re.compile(r"^(config\.toml|metrics\.jsonl|best\.safetensors|step-\d+(\.trainer)?\.safetensors)$")
LOCK_NAME = ".seqkit.lock"
log = logging.getLogger(__name__)

# Config keys a resumed run may change: they steer how training goes on, not what is trained.
# Anything else (model, task, data, seed, train.best_metric) changed makes a different run.
RESUMABLE_CHANGES = ("train.", "backend", "precision", "data.prepare")  # prepared or not: same batches
NOT_RESUMABLE = ("train.best_metric",)


class RunFolder:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.checkpoints = self.root / "checkpoints"
        self.best = self.root / "best.safetensors"
        self.metrics = self.root / "metrics.jsonl"
        self.config = self.root / "config.toml"
        self.read_only = False  # set by lock() when the folder cannot be written (a finished run)
        self._tensorboard = None

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints / f"step-{step:07d}.safetensors"

    @staticmethod
    def trainer_path(model_path: Path) -> Path:
        return model_path.with_suffix(".trainer.safetensors")

    @staticmethod
    def step_of(path: Path) -> int:
        return int(_STEP.match(Path(path).name).group(1))

    def steps(self) -> list[Path]:
        """Complete checkpoints (model and trainer file), oldest first."""
        if not self.checkpoints.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.checkpoints.iterdir() if (m := _STEP.match(p.name))]
        return [p for _, p in sorted(found) if self.trainer_path(p).exists()]

    def latest_checkpoint(self, report=None) -> Path | None:
        """The newest checkpoint whose two files read back; a corrupt newer one (a damaged copy,
        a failing disk) is skipped, never trusted, and ``report`` (a callable) is told why."""
        for path in reversed(self.steps()):
            try:
                ckpt.load_tensors(path)
                ckpt.load_tensors(self.trainer_path(path))
            except CheckpointError as exc:
                (report or log.warning)(f"skipping a checkpoint that does not read back: {exc}")
                continue
            return path
        return None

    def agreed_checkpoint(self, group, report=None) -> Path | None:
        """``latest_checkpoint()`` as rank 0 sees it, on every rank of a distributed ``group``; a rank
        that cannot see that file (another machine without a shared run folder) is an error."""
        latest = self.latest_checkpoint(report) if group.is_main else None
        step = group.broadcast_json(None if latest is None else self.step_of(latest))
        if step is None:
            return None
        path = self.checkpoint_path(step)
        if not group.is_main and not (path.exists() and self.trainer_path(path).exists()):
            raise CheckpointError(f"{path}: rank {group.rank} cannot see the checkpoint rank 0 resumes "
                                  "from; the run folder must be on a file system every machine shares")
        return path

    # -- one writer, only our own files ------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run folder for writing: a second process gets a one-line error naming the
        holder. Refuses a folder that holds files seqkit did not make (``--out .`` in a project).
        On a read-only file system the folder is used without a lock (``read_only``): reading a
        finished run works, and a write that cannot happen is a one-line StorageError."""
        self.check_is_run_folder()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
        except FileExistsError:
            raise RunFolderError(f"{self.root}: is a file, not a run folder") from None
        except OSError as exc:
            if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM) or not self.root.is_dir():
                raise RunFolderError(f"{self.root}: cannot use as a run folder: {exc.strerror}") from None
            fd = None
        if fd is None:  # read-only: nobody can write here, so there is nothing to lock against
            self.read_only = True
            yield
            return
        try:
            _flock(fd, self)
            os.ftruncate(fd, 0)
            os.write(fd, _holder().encode())
            yield
        finally:
            os.close(fd)  # releases the lock

    def check_is_run_folder(self) -> None:
        """A run folder is new, empty, or made by seqkit (its lock file, or checkpoints/)."""
        if str(self.root) in ("", "."):
            if not (self.root / LOCK_NAME).exists():
                raise RunFolderError("--out: the current folder is not a run folder; name one "
                                     "(an empty --out is usually an unset shell variable)")
        if self.root.exists() and not self.root.is_dir():
            raise RunFolderError(f"{self.root}: is a file, not a run folder")
        if not self.root.is_dir() or (self.root / LOCK_NAME).exists() or self.checkpoints.is_dir():
            return
        foreign = sorted(p.name for p in self.root.iterdir())
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise RunFolderError(f"{self.root}: not a seqkit run folder and not empty ({shown}); "
                                 "choose a new or empty folder for --out")

    def is_temporary(self, path: Path) -> bool:
        """A temporary file of one of our own writes (``.NAME.XXXXXXXX.tmp``)."""
        if not storage.is_temporary(path):
            return False
        name = path.name[1:].rsplit(".", 2)[0]
        return bool(_OWN.match(name))

    def remove_temporaries(self) -> None:
        """Delete the temporary files of writes a crash cut short (only the writer may call this)."""
        for folder in (self.root, self.checkpoints):
            if folder.is_dir():
                for path in folder.iterdir():
                    if self.is_temporary(path):
                        storage.unlink(path)

    def has_history(self) -> bool:
        """Whether a run saved something here: a checkpoint file, a best model, or an evaluation
        in metrics.jsonl (logged only after its checkpoint). Training lines alone are what a crash
        before the first checkpoint leaves: nothing to resume, and a rerun starts over."""
        if self.best.exists():
            return True
        # a trainer file alone is a checkpoint a crash cut short (it is written first)
        if self.checkpoints.is_dir() and any(_STEP.match(p.name) for p in self.checkpoints.iterdir()):
            return True
        return any("eval" in record for record in self.read_metrics())

    def clear(self) -> None:
        """Start over: remove seqkit's own files of an earlier run (nothing else)."""
        for path in [*(self.checkpoints.iterdir() if self.checkpoints.is_dir() else [])]:
            name = path.name.replace(".trainer.safetensors", ".safetensors")  # a step's two files
            if _STEP.match(name) or self.is_temporary(path):
                storage.unlink(path)
        for path in (self.best, self.metrics, self.config):
            storage.unlink(path)

    # -- metrics ------------------------------------------------------------------------------

    def restore_metrics(self, step: int, history: list[dict[str, Any]]) -> None:
        """Make metrics.jsonl what a run that never stopped would hold at checkpoint ``step``:
        records a crashed run wrote after it go (they are logged again), a torn last line goes,
        and an evaluation of ``history`` (the trainer state's) that a crash kept out is put back."""
        kept, logged = [], set()
        lines = self._metrics_text().splitlines(keepends=True)
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            at = record.get("step") if isinstance(record, dict) else None
            if type(at) is int and at <= step and line.endswith("\n"):  # damaged lines go too
                kept.append(line)
                if "eval" in record:
                    logged.add(record["step"])
        for entry in history:
            if entry["step"] <= step and entry["step"] not in logged:
                kept.append(json.dumps(eval_record(entry)) + "\n")
        if kept != lines:
            storage.atomic_write(self.metrics, "".join(kept).encode())

    def log(self, record: dict[str, Any]) -> None:
        """Append to metrics.jsonl (and TensorBoard, when it is installed)."""
        storage.make_folder(self.root)
        storage.append(self.metrics, json.dumps(record) + "\n")
        writer = self._writer()
        if writer is not None:
            prefix = record.get("eval", "train")
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    writer.add_scalar(f"{prefix}/{key}", value, record["step"])
            writer.flush()

    def _writer(self):
        if self._tensorboard is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                self._tensorboard = False
            else:
                self._tensorboard = SummaryWriter(str(self.root / "tensorboard"))
        return self._tensorboard or None

    def read_metrics(self) -> list[dict[str, Any]]:
        """The records of metrics.jsonl; a line a crash tore (or that is not a record with a step)
        is skipped."""
        records = []
        for line in self._metrics_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and type(record.get("step")) is int:
                records.append(record)
        return records

    def _metrics_text(self) -> str:
        if not self.metrics.exists() and not self.metrics.is_symlink():
            return ""
        if (kind := storage.not_a_file(self.metrics)) is not None:
            raise RunFolderError(f"{self.metrics}: {kind}, not seqkit's metrics file")
        try:
            return self.metrics.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise RunFolderError(f"{self.metrics}: cannot read: {exc.strerror}") from None

    # -- checkpoints and the best model -------------------------------------------------------------

    def prune(self, keep_last: int, best_step: int = 0) -> None:
        """Keep the newest ``keep_last`` checkpoints, and the best step's until best.safetensors
        holds it (a crash between a checkpoint and its copy to best must not lose the best). Files
        of older steps left by a prune a crash cut short go too; the model file goes first, so a
        half-removed checkpoint is never taken for a complete one."""
        complete = self.steps()
        if not complete:
            return
        kept = {self.step_of(p) for p in complete[-keep_last:]}
        if best_step and best_step not in kept and self.best_step(verify=False) != best_step:
            kept.add(best_step)
        newest = self.step_of(complete[-1])
        found = [(int(m.group(1)), p) for p in self.checkpoints.iterdir()
                 if (m := _STEP.match(p.name.replace(".trainer.", ".")))]
        for step, path in sorted(found, key=lambda item: (item[0], ".trainer." in item[1].name)):
            if step < newest and step not in kept:
                storage.unlink(path)

    def set_best(self, path: Path) -> None:
        storage.atomic_copy(path, self.best)

    def best_step(self, verify: bool = True) -> int | None:
        """The step best.safetensors was saved at; None when there is none or it does not read
        back (``verify=False`` reads the header alone, without the checksum)."""
        try:
            meta = ckpt.load_tensors(self.best)[1] if verify else _header_meta(self.best)
        except (CheckpointError, OSError, ValueError):
            return None
        step = meta.get("step") if isinstance(meta, dict) else None
        return step if isinstance(step, int) else None

    def repair_best(self, best_step: int) -> bool:
        """Make best.safetensors the checkpoint of ``best_step`` (what the trainer state says is
        best) when a crash or a full disk came between the two; True when it had to."""
        if not best_step or self.best_step() == best_step:
            return False
        source = self.checkpoint_path(best_step)
        if not source.exists():
            raise RunFolderError(f"{self.best}: should hold step {best_step}, whose checkpoint "
                                 f"{source} is gone; the best model of this run is lost")
        self.set_best(source)
        return True

    # -- the stored config ----------------------------------------------------------------------

    def write_config(self, config: RunConfig, changes: list[str] = ()) -> None:
        """config.toml: the config in force, with a comment line for each change a resumed run
        made to it (so it never claims a value that did not hold for the whole run)."""
        old = self.config.read_text(encoding="utf-8") if self.config.exists() else None
        notes = [line for line in (old or "").splitlines() if line.startswith("# ")]
        notes += [note for note in (f"# {c}" for c in changes) if note not in notes]  # said again on a rerun
        text = "".join(f"{note}\n" for note in notes)
        text += config_to_toml(config)
        if text != old:
            storage.atomic_write(self.config, text.encode())


def config_changes(stored_toml: str, config: RunConfig) -> tuple[list[str], list[str]]:
    """Keys whose values differ between a checkpoint's config and ``config``: (those a resumed run
    may take, those that make it a different run), each as "key: old -> new"."""
    old, new = _flatten(tomllib.loads(stored_toml)), _flatten(to_toml_data(config))
    resumable, other = [], []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            line = f"{key}: {_show(old.get(key))} -> {_show(new.get(key))}"
            ok = key.startswith(RESUMABLE_CHANGES) and key not in NOT_RESUMABLE
            (resumable if ok else other).append(line)
    return resumable, other


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    flat = {}
    for key, value in data.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else key))
    return flat


def _show(value: Any) -> str:
    return "(unset)" if value is None else json.dumps(value)


def eval_record(entry: dict[str, Any]) -> dict[str, Any]:
    """The metrics.jsonl record of an evaluation kept in the trainer state's history."""
    metrics = {k: v for k, v in entry.items() if k not in ("step", "eval")}
    return {"step": entry["step"], "eval": entry.get("eval", "valid"), **metrics}


def _header_meta(path: Path) -> Any:
    """The seqkit JSON document of a safetensors file's header, unchecked (cheap: no tensors)."""
    with path.open("rb") as f:
        size = int.from_bytes(f.read(8), "little")
        if size > ckpt.MAX_HEADER_BYTES:
            raise ValueError("header too large")
        header = json.loads(f.read(size))
    return json.loads(header.get("__metadata__", {}).get("seqkit", "null"))


def _holder() -> str:
    return (f"pid {os.getpid()} on {socket.gethostname()} since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(os.path.basename(a) for a in sys.argv[:2])}")


def _flock(fd: int, folder: RunFolder) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no advisory locks on this platform
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = (folder.root / LOCK_NAME).read_text(encoding="utf-8", errors="replace").strip()
        raise RunFolderError(f"{folder.root}: in use by another seqkit run ({holder or 'unknown'}); "
                             "wait for it to finish or choose another --out") from None


def model_meta(config: RunConfig, task: Task, manager: PluginManager, **extra: Any) -> dict[str, Any]:
    """What a checkpoint needs to rebuild its model elsewhere: config, task state, and the plugin,
    distribution and version of each component."""
    components = {}
    for key, kind, component in (("task", "task", config.task), ("encoder", "encoder", config.model.encoder),
                                 ("decoder", "decoder", config.model.decoder)):
        if component is not None:
            reg = manager.get(kind, component.name)
            components[key] = {"kind": kind, "name": reg.name, "plugin": reg.plugin,
                               "distribution": reg.distribution, "version": reg.version}
    return {"config": config_to_toml(config), "task_state": task.state_dict(),
            "components": components, **extra}
