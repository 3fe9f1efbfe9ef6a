"""Timing seqkit's models: training steps, encode latency and generation, against raw PyTorch if
asked (``seqkit bench``).

  settings.py  what to time and what a result holds (no torch: the command line reads its defaults)
  runner.py    building the models and timing them (run_bench)
  steps.py     one timed step of each mode
  raw.py       the hand-written PyTorch baseline with the same weights
  flops.py     FLOPs per step and MFU
  report.py    table, JSON, CSV and chart

The public names below are resolved on first use, so importing seqkit.bench imports no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> module that defines it (PEP 562)
_LAZY = {
    **dict.fromkeys(("MODES", "GENERATE", "DEFAULT_ARCHITECTURES", "BenchSettings", "BenchRow",
                     "ROW_FIELDS", "BenchResult"), "seqkit.bench.settings"),
    **dict.fromkeys(("run_bench", "split_architecture", "model_config", "build_seqkit", "check_length"),
                    "seqkit.bench.runner"),
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'seqkit.bench' has no attribute {name!r}")
