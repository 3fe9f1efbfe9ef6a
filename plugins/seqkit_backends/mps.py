"""The Apple-silicon backend. fp32 by default: autocast on MPS covers fewer ops than on CUDA,
bf16 needs recent macOS, and fp16 training needs loss scaling; users can still ask for fp16."""

from __future__ import annotations

import torch

from seqkit.interfaces import Backend


class MpsBackend(Backend):
    name = "mps"
    priority = 20
    distributed_backend = "gloo"

    def is_available(self) -> bool:
        return torch.backends.mps.is_available()

    def device(self, index: int | None = None) -> torch.device:
        return torch.device("mps")

    def device_name(self) -> str:
        return "Apple silicon GPU (mps)"

    def default_precision(self) -> str:
        return "fp32"

    def supported_precisions(self) -> tuple[str, ...]:
        return ("fp32", "fp16")

    def synchronize(self) -> None:
        torch.mps.synchronize()

    def memory_stats(self) -> dict[str, int]:
        allocated = torch.mps.current_allocated_memory()
        # MPS keeps no peak counter; the driver's total is the closest upper bound
        return {"allocated": allocated, "peak": torch.mps.driver_allocated_memory()}

    def peak_flops(self, precision: str) -> float | None:
        return None  # Apple publishes no per-precision dense peak figures to hold MFU against
