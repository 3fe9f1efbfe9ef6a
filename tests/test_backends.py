"""Device backends: cpu here, auto selection by priority, errors, peak FLOP/s table."""

from __future__ import annotations

import pytest
import torch

from seqkit import BackendUnavailableError
from seqkit.backends import backends, get_backend, resolve_precision
from seqkit.plugins import make_plugin_manager
from seqkit_backends.peak_flops import lookup_peak_flops
from tests.backend_support import backend_plugin


def test_cpu_backend_is_available_and_reports_itself():
    cpu = get_backend("cpu")
    assert cpu.is_available() and cpu.device() == torch.device("cpu")
    assert cpu.default_precision() == "fp32" and resolve_precision(cpu) == "fp32"
    assert cpu.distributed_backend == "gloo"
    assert cpu.device_name()
    cpu.synchronize()
    _ = torch.ones(1 << 20)
    stats = cpu.memory_stats()
    assert stats["peak"] >= stats["allocated"] > 1 << 20
    assert cpu.peak_flops("fp32") is None
    with cpu.autocast("bf16"):
        out = torch.ones(2, 2) @ torch.ones(2, 2)
    assert out.dtype == torch.bfloat16


def test_cuda_and_mps_declare_their_distributed_backends_and_precisions():
    found = {b.name: b for b in backends()}
    assert found["cuda"].distributed_backend == "nccl"
    assert found["mps"].distributed_backend == "gloo"
    assert found["mps"].default_precision() == "fp32"
    builtin = [b.name for b in backends() if b.name in ("cuda", "mps", "cpu")]
    assert builtin == ["cuda", "mps", "cpu"]  # auto's order of preference (other plugins may add theirs)


def test_auto_picks_the_available_backend_with_highest_priority():
    manager = make_plugin_manager(plugins=[("fast", backend_plugin("fast"))])
    assert get_backend("auto", manager).name == "fast"
    if not torch.cuda.is_available():
        assert get_backend("auto").name in {"cpu", "mps"}


def test_unavailable_backend_lists_the_available_ones():
    if torch.cuda.is_available():
        pytest.skip("cuda is available on this machine")
    with pytest.raises(BackendUnavailableError,
                       match=r"backend 'cuda' is not available here; available: .*cpu"):
        get_backend("cuda")
    with pytest.raises(BackendUnavailableError, match=r"unknown backend 'tpu'; known: cuda, mps, cpu"):
        get_backend("tpu")


def test_unsupported_precision_is_an_error():
    with pytest.raises(BackendUnavailableError, match="precision 'fp16' is not supported by backend 'cpu'"):
        resolve_precision(get_backend("cpu"), "fp16")


@pytest.mark.parametrize(
    ("name", "precision", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", "bf16", 989.4e12),
        ("NVIDIA H100 PCIe", "bf16", 756e12),
        ("NVIDIA H200", "fp32", 66.9e12),
        ("NVIDIA A100-SXM4-80GB", "bf16", 312e12),
        ("NVIDIA L4", "bf16", 121e12),
        ("NVIDIA L40S", "bf16", 362e12),
        ("Tesla V100-SXM2-16GB", "bf16", None),
        ("NVIDIA A10G", "bf16", None),
        ("Some Future GPU", "bf16", None),
    ],
)
def test_peak_flops_table(name, precision, expected):
    assert lookup_peak_flops(name, precision) == (expected and pytest.approx(expected))
