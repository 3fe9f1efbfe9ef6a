"""The layout of a run folder, and the metadata saved with every model.

RUN/config.toml                                  the resolved config of the run
RUN/metrics.jsonl                                one JSON object per log line or evaluation
RUN/checkpoints/step-0000400.safetensors         model weights + metadata
RUN/checkpoints/step-0000400.trainer.safetensors optimizer, RNG, step, data position
RUN/best.safetensors                             the best model so far (by train.best_metric)
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from seqkit import checkpoint as ckpt
from seqkit.config import RunConfig, config_to_toml
from seqkit.errors import CheckpointError
from seqkit.interfaces import Task
from seqkit.plugins import PluginManager

_STEP = re.compile(r"^step-(\d+)\.safetensors$")
log = logging.getLogger(__name__)


class RunFolder:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.checkpoints = self.root / "checkpoints"
        self.best = self.root / "best.safetensors"
        self.metrics = self.root / "metrics.jsonl"
        self.config = self.root / "config.toml"
        self._tensorboard = None

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints / f"step-{step:07d}.safetensors"

    @staticmethod
    def trainer_path(model_path: Path) -> Path:
        return model_path.with_suffix(".trainer.safetensors")

    def steps(self) -> list[Path]:
        """Complete checkpoints (model and trainer file), oldest first."""
        if not self.checkpoints.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.checkpoints.iterdir() if (m := _STEP.match(p.name))]
        return [p for _, p in sorted(found) if self.trainer_path(p).exists()]

    def latest_checkpoint(self) -> Path | None:
        """The newest checkpoint whose two files read back; a corrupt newer one (a crash while
        writing it, a truncated copy) is skipped, never trusted."""
        for path in reversed(self.steps()):
            try:
                ckpt.load_tensors(path)
                ckpt.load_tensors(self.trainer_path(path))
            except CheckpointError as exc:
                log.warning("skipping a checkpoint that does not read back: %s", exc)
                continue
            return path
        return None

    def agreed_checkpoint(self, group) -> Path | None:
        """``latest_checkpoint()`` as rank 0 sees it, on every rank of a distributed ``group``; a rank
        that cannot see that file (another machine without a shared run folder) is an error."""
        latest = self.latest_checkpoint() if group.is_main else None
        step = group.broadcast_json(None if latest is None else int(_STEP.match(latest.name).group(1)))
        if step is None:
            return None
        path = self.checkpoint_path(step)
        if not group.is_main and not (path.exists() and self.trainer_path(path).exists()):
            raise CheckpointError(f"{path}: rank {group.rank} cannot see the checkpoint rank 0 resumes "
                                  "from; the run folder must be on a file system every machine shares")
        return path

    def remove_temporaries(self) -> None:
        """Delete the temporary files of writes a crash cut short (only the writer may call this)."""
        for folder in (self.root, self.checkpoints):
            if folder.is_dir():
                for path in folder.glob(".*.tmp"):
                    path.unlink(missing_ok=True)

    def rewind_metrics(self, step: int) -> None:
        """Keep the metrics.jsonl records of steps up to ``step`` (the checkpoint a run resumes
        from): records a crashed run wrote after it are logged again, and a torn last line goes."""
        if not self.metrics.exists():
            return
        kept = []
        for line in self.metrics.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("step", 0) <= step:
                kept.append(line + "\n")
        ckpt.atomic_write(self.metrics, "".join(kept).encode())

    def prune(self, keep_last: int) -> None:
        """Keep the newest ``keep_last`` checkpoints (best.safetensors is a separate copy)."""
        for path in self.steps()[:-keep_last]:
            self.trainer_path(path).unlink(missing_ok=True)
            path.unlink(missing_ok=True)

    def set_best(self, path: Path) -> None:
        ckpt.atomic_copy(path, self.best)

    def write_config(self, config: RunConfig) -> None:
        ckpt.atomic_write(self.config, config_to_toml(config).encode())

    def log(self, record: dict[str, Any]) -> None:
        """Append to metrics.jsonl (and TensorBoard, when it is installed)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self.metrics.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
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
        if not self.metrics.exists():
            return []
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]


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
