"""seqkit: plugin-based sequence modeling. Recurrent networks compute over a sequence step by step,
the Transformer computes all positions at once; seqkit trains both kinds and ships new kinds.

Importing seqkit loads no plugin and no heavy module: the public API below is resolved lazily.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import pluggy

from seqkit.errors import (
    BackendUnavailableError,
    CheckpointError,
    ConfigError,
    DataError,
    DistributedError,
    ExportError,
    GenerationError,
    PluginCodeError,
    PluginError,
    RegistryError,
    RunFolderError,
    SeqkitError,
    StorageError,
    TrainingError,
)

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("seqkit")
"""Marks a plugin function as the implementation of a seqkit hook (see seqkit.hookspecs)."""

# name -> module that defines it; imported on first access (PEP 562)
_LAZY = {
    "make_plugin_manager": "seqkit.plugins",
    "load_config": "seqkit.config",
    "train": "seqkit.api",
    "load": "seqkit.api",
    "prepare": "seqkit.api",
    "export": "seqkit.api",
    "import_hf": "seqkit.api",
    "get_backend": "seqkit.backends",
    "ConsoleProgress": "seqkit.progress",
    "Events": "seqkit.events",
    "RunInfo": "seqkit.events",
    # what a plugin author implements and returns (seqkit.interfaces holds the contracts)
    "Encoder": "seqkit.interfaces",
    "Decoder": "seqkit.interfaces",
    "EncoderOutput": "seqkit.interfaces",
    "Task": "seqkit.interfaces",
    "Backend": "seqkit.interfaces",
    "Example": "seqkit.interfaces",
    "EncodedExample": "seqkit.interfaces",
    "EncodedBatch": "seqkit.interfaces",
    "TokenArrays": "seqkit.ragged",
    "Batch": "seqkit.interfaces",
    "Direction": "seqkit.interfaces",
    "ModelShape": "seqkit.model",
}

__all__ = [
    "BackendUnavailableError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DistributedError",
    "ExportError",
    "GenerationError",
    "PluginCodeError",
    "PluginError",
    "RegistryError",
    "RunFolderError",
    "SeqkitError",
    "StorageError",
    "TrainingError",
    "__version__",
    "hookimpl",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'seqkit' has no attribute {name!r}")


if TYPE_CHECKING:  # pragma: no cover
    from seqkit.api import export as export
    from seqkit.api import import_hf as import_hf
    from seqkit.api import load as load
    from seqkit.api import prepare as prepare
    from seqkit.api import train as train
    from seqkit.backends import get_backend as get_backend
    from seqkit.config import load_config as load_config
    from seqkit.events import Events as Events
    from seqkit.events import RunInfo as RunInfo
    from seqkit.interfaces import Backend as Backend
    from seqkit.interfaces import Batch as Batch
    from seqkit.interfaces import Decoder as Decoder
    from seqkit.interfaces import Direction as Direction
    from seqkit.interfaces import EncodedBatch as EncodedBatch
    from seqkit.interfaces import EncodedExample as EncodedExample
    from seqkit.interfaces import Encoder as Encoder
    from seqkit.interfaces import EncoderOutput as EncoderOutput
    from seqkit.interfaces import Example as Example
    from seqkit.interfaces import Task as Task
    from seqkit.model import ModelShape as ModelShape
    from seqkit.plugins import make_plugin_manager as make_plugin_manager
    from seqkit.progress import ConsoleProgress as ConsoleProgress
    from seqkit.ragged import TokenArrays as TokenArrays
