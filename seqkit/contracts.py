"""Checks of what plugins promise, run early: what would otherwise crash only after training time
is spent. A decoder's cache must be batch-first (generation reorders and drops its rows), and a
task's state must be JSON (it is saved in every checkpoint). Each failure is one line naming the
plugin and component."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from seqkit.blame import exception_line
from seqkit.errors import PluginCodeError, PluginError, SeqkitError
from seqkit.interfaces import EncoderOutput

# -- decoder caches ------------------------------------------------------------------------------

CACHE_BATCH = 3  # rows of the cache at init_cache; unlike typical layer or head counts
REORDER = (2, 0, 1, 1, 0)  # beam expansion: a different number of rows after reorder_cache


@torch.no_grad()
def check_cache(model: torch.nn.Module, embed, enc: EncoderOutput | None, who: str) -> None:
    """``init_cache`` for CACHE_BATCH rows, one cached step, ``reorder_cache`` to len(REORDER)
    rows, one more step: every cache tensor must have the batch in dim 0 throughout, and the steps
    must run. ``embed`` maps token ids (B, T) to (B, T, D); ``enc`` has CACHE_BATCH rows (or None);
    ``who`` names the decoder ("plugin P, decoder 'x'"). Raises PluginError."""
    decoder = model.decoder
    batch, index = CACHE_BATCH, torch.tensor(REORDER)
    stage = "init_cache"
    try:
        cache = decoder.init_cache(enc, batch, 4)
        _batch_first(cache, batch, f"init_cache(batch_size={batch})", who)
        stage = "a cached decoding step"
        y = embed(torch.zeros(batch, 1, dtype=torch.long))
        _, cache = decoder(y, enc, cache)
        _batch_first(cache, batch, f"a cached step of {batch} rows", who)
        stage = "reorder_cache"
        cache = decoder.reorder_cache(cache, index)
        _batch_first(cache, len(REORDER), f"reorder_cache to {len(REORDER)} rows", who)
        stage = "a cached step after reorder_cache"
        picked = enc.index_select(index) if enc is not None else None
        _, cache = decoder(embed(torch.zeros(len(REORDER), 1, dtype=torch.long)), picked, cache)
        _batch_first(cache, len(REORDER), f"a cached step after reorder_cache to {len(REORDER)} rows",
                     who)
    except SeqkitError:
        raise
    except Exception as exc:
        raise PluginCodeError(f"{who}: {stage} failed (is the cache batch-first?): "
                              f"{exception_line(exc)}") from exc


def _batch_first(cache: Any, rows: int, after: str, who: str) -> None:
    for where, tensor in _tensors(cache, "cache"):
        if tensor.dim() == 0 or tensor.size(0) != rows:
            raise PluginError(
                f"{who}: cache is not batch-first: after {after}, {where} has shape "
                f"{tuple(tensor.shape)}; every cache tensor needs the batch ({rows}) in dim 0, so "
                "that generation can reorder and drop rows")


def _tensors(value: Any, where: str) -> Iterator[tuple[str, Tensor]]:
    if isinstance(value, Tensor):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _tensors(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _tensors(item, f"{where}[{i}]")


# -- task state ----------------------------------------------------------------------------------


def check_task_state(task: Any, source: Any) -> None:
    """``task.state_dict()`` must be JSON (it goes into every checkpoint) and read back through
    ``task.load_state_dict`` unchanged. ``source`` is the task's Registration, or a PluginManager
    to find it in. A PluginError names the task and the first key that is not JSON."""
    who = _task_name(task, source)
    try:
        state = task.state_dict()
    except SeqkitError:
        raise
    except Exception as exc:
        raise PluginCodeError(f"{who}: state_dict() raised {exception_line(exc)}") from exc
    if not isinstance(state, dict):
        raise PluginError(f"{who}: state_dict() must return a dict, got {type(state).__name__}")
    bad = _not_json(state, "")
    if bad is not None:
        key, problem = bad
        raise PluginError(f"{who}: state_dict() is not JSON: key {key} {problem}; checkpoints store "
                          "the task state as JSON")
    text = json.dumps(state, sort_keys=True)
    try:
        task.load_state_dict(json.loads(text))
        again = json.dumps(task.state_dict(), sort_keys=True)
    except SeqkitError:
        raise
    except Exception as exc:
        raise PluginCodeError(f"{who}: load_state_dict() cannot read back what state_dict() "
                              f"returned (as JSON): {exception_line(exc)}") from exc
    if again != text:
        raise PluginError(f"{who}: state_dict() changed after load_state_dict() of its own JSON "
                          "state: a loaded model would differ from the trained one")


def _not_json(value: Any, path: str) -> tuple[str, str] | None:
    """(key path, what is wrong) of the first value JSON cannot hold exactly, or None."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return (path or "<top level>",
                        f"has a {type(key).__name__} key {key!r} (JSON keys are strings)")
            found = _not_json(item, f"{path}.{key}" if path else key)
            if found is not None:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _not_json(item, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    return path or "<top level>", f"holds a {type(value).__name__}"


def _task_name(task: Any, source: Any) -> str:
    registration = source
    if hasattr(source, "registrations"):  # a PluginManager
        registration = source.built_by(task) if hasattr(source, "built_by") else None
        if registration is None:
            loaded = [(reg, reg.loaded()) for reg in source.registrations("task")]
            candidates = [reg for reg, f in loaded if isinstance(f, type) and isinstance(task, f)]
            exact = [reg for reg in candidates if type(task) is reg.loaded()]
            registration = (exact or candidates or [None])[0]
    if registration is None or not hasattr(registration, "plugin"):
        return f"task {type(task).__name__}"
    return f"plugin {registration.plugin}, task {registration.name!r}"
