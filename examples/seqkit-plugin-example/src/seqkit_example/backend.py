"""The ``plain_cpu`` backend: the CPU under another name, fp32 only, never chosen by ``auto``
(priority below the built-in cpu). A minimal complete seqkit backend: every method of the Backend
contract, nothing more."""

from __future__ import annotations

import contextlib

import torch
from seqkit import Backend, BackendUnavailableError


class PlainCpuBackend(Backend):
    name = "plain_cpu"  # the name it is registered under
    priority = -10  # `backend = "auto"` picks the available backend of highest priority
    distributed_backend = "gloo"  # torch.distributed's CPU backend, for --nproc

    def is_available(self) -> bool:
        return True

    def device(self, index: int | None = None) -> torch.device:
        return torch.device("cpu")

    def device_name(self) -> str:
        return "CPU (plain_cpu example backend)"

    def default_precision(self) -> str:
        return "fp32"  # must be one of supported_precisions()

    def supported_precisions(self) -> tuple[str, ...]:
        return ("fp32",)

    def autocast(self, precision: str) -> contextlib.AbstractContextManager:
        if precision != "fp32":  # refused clearly, in seqkit's own error class
            raise BackendUnavailableError(f"backend plain_cpu runs in fp32 only, not {precision}")
        return contextlib.nullcontext()

    def synchronize(self) -> None:
        """CPU work runs synchronously: nothing to wait for."""

    def memory_stats(self) -> dict[str, int]:
        return {"allocated": 0, "peak": 0}  # bytes; this example does not measure them

    def peak_flops(self, precision: str) -> float | None:
        return None  # unknown: MFU is reported as unknown
