"""Dense (no sparsity) peak FLOP/s of known accelerators, from the vendors' data sheets.

fp32 means plain FP32 (CUDA cores): torch does not use TF32 for fp32 matmuls by default.
Keys are matched as substrings of torch.cuda.get_device_name(), first match wins, so more
specific names come first.
"""

from __future__ import annotations

T = 1e12
PEAK_FLOPS: list[tuple[str, dict[str, float]]] = [
    ("H100 PCIe", {"bf16": 756 * T, "fp16": 756 * T, "fp32": 51.2 * T}),
    ("H100", {"bf16": 989.4 * T, "fp16": 989.4 * T, "fp32": 66.9 * T}),  # SXM
    ("H200", {"bf16": 989.4 * T, "fp16": 989.4 * T, "fp32": 66.9 * T}),
    ("B200", {"bf16": 2250 * T, "fp16": 2250 * T}),
    ("A100", {"bf16": 312 * T, "fp16": 312 * T, "fp32": 19.5 * T}),
    ("L40S", {"bf16": 362 * T, "fp16": 362 * T, "fp32": 91.6 * T}),
    ("L40", {"bf16": 181 * T, "fp16": 181 * T, "fp32": 90.5 * T}),
    ("L4", {"bf16": 121 * T, "fp16": 121 * T, "fp32": 30.3 * T}),
    ("A10G", {}),  # a cloud variant without a clear published dense figure
    ("A10", {"bf16": 125 * T, "fp16": 125 * T, "fp32": 31.2 * T}),
    ("RTX 4090", {"bf16": 165.2 * T, "fp16": 165.2 * T, "fp32": 82.6 * T}),
    ("V100", {"fp16": 125 * T, "fp32": 15.7 * T}),
    ("T4", {"fp16": 65 * T, "fp32": 8.1 * T}),
]


def lookup_peak_flops(device_name: str, precision: str) -> float | None:
    """Peak FLOP/s of the device called ``device_name`` in ``precision``; None when unknown."""
    for key, table in PEAK_FLOPS:
        if key in device_name:
            return table.get(precision)
    return None
