"""Fine-tuning: a new run that starts from another run's weights and tokenizers (``train(init=RUN)``).

The config must describe the same model as RUN's: every ``[model]`` key but the dropouts (which
fine-tuning often changes), and the same task. The task is not fitted: RUN's tokenizers are taken
as they are (the prepared data are keyed by them), so ids mean what they meant when RUN was trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from seqkit import checkpoint as ckpt
from seqkit.config import RunConfig, tomllib
from seqkit.convert import to_toml_data
from seqkit.errors import CheckpointError, ConfigError
from seqkit.run_folder import RunFolder

# what fine-tuning may change; everything else in [model] must be as it was
FREE = ("dropout", "attention_dropout", "embedding_dropout")


@dataclass
class Init:
    """The run a new run starts from: its checkpoint, weights and task state."""

    path: Path
    tensors: dict[str, Tensor]
    task_state: dict[str, Any]
    config: str  # its stored config (TOML)


def read_init(init: Path, config: RunConfig, manager) -> Init:
    """RUN's best (else latest) checkpoint, checked against ``config``: a one-line ConfigError
    naming the first key of ``[model]`` or ``[task]`` that differs."""
    path = init
    if init.is_dir():
        folder = RunFolder(init)
        path = folder.best if folder.best.exists() else folder.latest_checkpoint()
        if path is None:
            raise CheckpointError(f"{init}: no checkpoint to initialise from")
    elif not init.exists():
        raise CheckpointError(f"{init}: no such run folder or checkpoint to initialise from")
    tensors, meta = ckpt.load_tensors(path)
    ckpt.check_meta(meta, path, manager)
    try:
        stored = tomllib.loads(meta["config"])
    except (KeyError, TypeError, tomllib.TOMLDecodeError):
        raise CheckpointError(f"{path}: damaged checkpoint: its stored config is wrong") from None
    wanted = to_toml_data(config)
    trained_on = (stored.get("task") or {}).get("name")
    if trained_on != config.task.name:
        raise ConfigError(f"task.name: {init} was trained on task {trained_on!r}, this config has "
                          f"{config.task.name!r}")
    old, new = _flat(stored.get("model") or {}, "model"), _flat(wanted.get("model") or {}, "model")
    for key in sorted(set(old) | set(new)):
        if key.rsplit(".", 1)[-1] in FREE or old.get(key) == new.get(key):
            continue
        raise ConfigError(f"{key}: {init} has {_shown(old.get(key))}, this config {_shown(new.get(key))} "
                          "(a run initialised from another has its architecture; copy its [model] table)")
    return Init(path, tensors, meta["task_state"], meta["config"])


def take_task_state(task, start: Init, config: RunConfig) -> None:
    """Give ``task`` the state of the run it starts from, and check that this config's task options
    keep it as it is (a translation task with ``shared_vocab`` changed would save one tokenizer of
    two): else a ConfigError naming the first task option that differs."""
    task.load_state_dict(start.task_state)
    if task.state_dict() == start.task_state:
        return
    old = _flat(tomllib.loads(start.config).get("task") or {}, "task")
    new = _flat(to_toml_data(config).get("task") or {}, "task")
    differ = [key for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)
              and key not in ("task.train", "task.valid", "task.test")]
    key = differ[0] if differ else "task"
    raise ConfigError(f"{key}: the task of this config does not keep the tokenizers of {start.path} as they "
                      "are; use its [task] options (data files aside)")


def _flat(data: Any, prefix: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(_flat(value, f"{prefix}.{key}"))
    return flat


def _shown(value: Any) -> str:
    return "nothing" if value is None else repr(value)
