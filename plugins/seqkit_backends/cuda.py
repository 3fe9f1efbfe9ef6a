"""The CUDA backend: bf16 autocast by default where the device supports it (no loss scaling
needed, unlike fp16), nccl for torch.distributed, peak FLOP/s from a table of known GPUs."""

from __future__ import annotations

import torch

from seqkit.errors import BackendUnavailableError
from seqkit.interfaces import Backend
from seqkit_backends.peak_flops import lookup_peak_flops


class CudaBackend(Backend):
    name = "cuda"
    priority = 30
    distributed_backend = "nccl"

    def is_available(self) -> bool:
        return torch.cuda.is_available()

    def device(self, index: int | None = None) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device() if index is None else index)

    def use_device(self, local_rank: int) -> torch.device:
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise BackendUnavailableError(f"local rank {local_rank} needs cuda:{local_rank}, but this "
                                          f"machine has {count} CUDA device(s); start at most {count} "
                                          "processes a node")
        torch.cuda.set_device(local_rank)  # nccl and current_device() follow it
        return self.device(local_rank)

    def device_name(self) -> str:
        return torch.cuda.get_device_name(self.device())

    def _bf16(self) -> bool:
        return torch.cuda.is_bf16_supported()

    def default_precision(self) -> str:
        return "bf16" if self._bf16() else "fp32"

    def supported_precisions(self) -> tuple[str, ...]:
        return ("fp32", "bf16", "fp16") if self._bf16() else ("fp32", "fp16")

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device())

    def memory_stats(self) -> dict[str, int]:
        device = self.device()
        return {
            "allocated": torch.cuda.memory_allocated(device),
            "peak": torch.cuda.max_memory_allocated(device),
            "reserved": torch.cuda.memory_reserved(device),
        }

    def reset_peak_memory(self) -> None:
        torch.cuda.reset_peak_memory_stats(self.device())

    def peak_flops(self, precision: str) -> float | None:
        return lookup_peak_flops(self.device_name(), precision)
