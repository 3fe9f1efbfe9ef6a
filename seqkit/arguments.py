"""Checks of the arguments a caller passes to the Python API, at its boundary: a wrong type or value
is one ConfigError naming the argument, never a TypeError from deep inside (pathlib, torch, tomli_w).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from seqkit.errors import BackendUnavailableError, ConfigError


def path_argument(value: Any, name: str) -> Path:
    """``value`` as a Path: a str or os.PathLike that is not empty."""
    if isinstance(value, bool) or not isinstance(value, (str, os.PathLike)):
        raise ConfigError(f"{name}: must be a path (str or pathlib.Path), got {_kind(value)}")
    if str(value).strip() == "":
        raise ConfigError(f"{name}: empty path")
    return Path(value)


def integer_argument(value: Any, name: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name}: must be an integer >= {minimum}, got {value!r}")
    return value


def flag_argument(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name}: must be True or False, got {value!r}")
    return value


def texts_argument(value: Any, name: str) -> tuple[str, ...]:
    """A list or tuple of strings (one str alone is refused: it would be read character by
    character)."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ConfigError(f"{name}: must be a list of strings, got {_kind(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ConfigError(f"{name}[{i}]: must be a string, got {_kind(item)}")
    return tuple(value)


def manager_argument(value: Any) -> Any:
    """None (a fresh plugin manager) or a seqkit PluginManager."""
    from seqkit.plugins import PluginManager

    if value is not None and not isinstance(value, PluginManager):
        raise ConfigError(f"manager: must be a seqkit PluginManager (seqkit.make_plugin_manager()) "
                          f"or None, got {_kind(value)}")
    return value


def device_argument(value: Any):
    """A torch.device that can hold a tensor here: a bad name is a ConfigError, a device this
    machine lacks a BackendUnavailableError."""
    import torch

    if not isinstance(value, (str, torch.device)):
        raise ConfigError(f"device: must be a device name ('cpu', 'cuda:0') or a torch.device, "
                          f"got {_kind(value)}")
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ConfigError(f"device: {value!r} is not a device name ({_first_line(exc)[:80]})") from None
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError, ValueError) as exc:  # torch says AssertionError for CUDA
        raise BackendUnavailableError(f"device: {value!r} is not available here: "
                                      f"{_first_line(exc)}") from None
    return device


def _kind(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
