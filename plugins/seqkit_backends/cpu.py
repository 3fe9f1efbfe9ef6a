"""The CPU backend: always available, fp32 by default (bf16 autocast on CPU is slower on most
x86 parts without AMX and changes results), gloo for torch.distributed."""

from __future__ import annotations

import platform
import resource
import sys
from pathlib import Path

import torch

from seqkit.interfaces import Backend


class CpuBackend(Backend):
    name = "cpu"
    priority = 0
    distributed_backend = "gloo"

    def is_available(self) -> bool:
        return True

    def device(self, index: int | None = None) -> torch.device:
        return torch.device("cpu")

    def device_name(self) -> str:
        cpuinfo = Path("/proc/cpuinfo")
        if cpuinfo.exists():
            for line in cpuinfo.read_text().splitlines():
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
        return platform.processor() or platform.machine()

    def default_precision(self) -> str:
        return "fp32"

    def supported_precisions(self) -> tuple[str, ...]:
        return ("fp32", "bf16")

    def synchronize(self) -> None:
        """CPU ops run synchronously; nothing to wait for."""

    def memory_stats(self) -> dict[str, int]:
        """Resident set size of this process now, and its peak (which cannot be reset)."""
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak *= 1 if sys.platform == "darwin" else 1024  # macOS reports bytes, Linux KiB
        current = _current_rss() or peak
        return {"allocated": current, "peak": max(peak, current)}  # maxrss may lag a page or so

    def peak_flops(self, precision: str) -> float | None:
        return None  # no trustworthy table for CPUs; MFU is reported as unknown


def _current_rss() -> int | None:
    statm = Path("/proc/self/statm")
    if not statm.exists():
        return None
    pages = int(statm.read_text().split()[1])
    return pages * resource.getpagesize()
