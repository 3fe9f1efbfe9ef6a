"""Conformance checks of a backend plugin (see :class:`seqkit.Backend`): what the trainer, the
benchmark and ``seqkit backends`` call. A backend that is not available on this machine is checked
for its name and availability only; the rest of its checks are "unsupported" here."""

from __future__ import annotations

import math

import torch

from seqkit.errors import SeqkitError
from seqkit.interfaces import PRECISIONS, Backend
from seqkit.plugins import Registration
from seqkit.testing import call_checked


def _backend(reg: Registration, available: bool = True) -> Backend:
    """The backend built by the factory; Unsupported when it is not available here."""
    from seqkit.testing import Unsupported

    who = f"backend {reg.name}"
    backend = call_checked(who, "the factory", reg.factory)
    assert isinstance(backend, Backend), (f"{who}: the factory built a {type(backend).__name__}, "
                                          "not a seqkit.Backend")
    if available and not call_checked(who, "is_available()", backend.is_available):
        raise Unsupported("not available on this machine")
    return backend


def backend_identity(reg: Registration) -> None:
    """name is the registered name, is_available() a bool, distributed_backend and priority set."""
    backend, who = _backend(reg, available=False), f"backend {reg.name}"
    assert backend.name == reg.name, (f"{who}: its name attribute is {backend.name!r}; it must be the "
                                      f"name it is registered under, {reg.name!r}")
    available = call_checked(who, "is_available()", backend.is_available)
    assert isinstance(available, bool), f"{who}: is_available() must return a bool, got {available!r}"
    assert isinstance(backend.distributed_backend, str) and backend.distributed_backend, (
        f"{who}: distributed_backend must name a torch.distributed backend (gloo, nccl)")
    assert isinstance(backend.priority, int), f"{who}: priority must be an int, got {backend.priority!r}"


def backend_device(reg: Registration) -> None:
    """device() is a torch.device that holds tensors, device_name() a non-empty string."""
    backend, who = _backend(reg), f"backend {reg.name}"
    device = call_checked(who, "device()", backend.device)
    assert isinstance(device, torch.device), f"{who}: device() must return a torch.device, got {device!r}"
    call_checked(who, f"a tensor on device() {device}", lambda: torch.ones(2, device=device) + 1)
    name = call_checked(who, "device_name()", backend.device_name)
    assert isinstance(name, str) and name, f"{who}: device_name() must be a non-empty string, got {name!r}"


def backend_precisions(reg: Registration) -> None:
    """default_precision() is one of supported_precisions(), all of them seqkit precisions; autocast
    of each supported precision runs a matmul, of any other one works or is refused clearly."""
    backend, who = _backend(reg), f"backend {reg.name}"
    supported = tuple(call_checked(who, "supported_precisions()", backend.supported_precisions))
    unknown = [p for p in supported if p not in PRECISIONS]
    assert not unknown, f"{who}: supported_precisions() has {unknown}; seqkit knows {', '.join(PRECISIONS)}"
    default = call_checked(who, "default_precision()", backend.default_precision)
    assert default in supported, (f"{who}: default_precision() is {default!r}, not one of "
                                  f"supported_precisions() {list(supported)}")
    device = backend.device()
    for precision in PRECISIONS:
        try:
            with backend.autocast(precision):
                torch.ones(4, 4, device=device) @ torch.ones(4, 4, device=device)
        except (ValueError, SeqkitError) as exc:  # a clear refusal
            assert precision not in supported, (f"{who}: autocast({precision!r}) refused a supported "
                                                f"precision: {exc}")
        except Exception as exc:
            state = "supported" if precision in supported else "unsupported"
            raise AssertionError(f"{who}: autocast({precision!r}) ({state}) raised {type(exc).__name__}: "
                                 f"{(str(exc).splitlines() or [''])[0]}; a supported precision must work, "
                                 "another must be refused with ValueError or a seqkit error") from None


def backend_runtime(reg: Registration) -> None:
    """synchronize() runs; memory_stats() gives int bytes for at least allocated and peak;
    peak_flops() of each supported precision is positive or None."""
    backend, who = _backend(reg), f"backend {reg.name}"
    call_checked(who, "synchronize()", backend.synchronize)
    call_checked(who, "reset_peak_memory()", backend.reset_peak_memory)
    stats = call_checked(who, "memory_stats()", backend.memory_stats)
    assert isinstance(stats, dict), f"{who}: memory_stats() must return a dict, got {type(stats).__name__}"
    missing = [key for key in ("allocated", "peak") if key not in stats]
    assert not missing, f"{who}: memory_stats() lacks {', '.join(missing)} (bytes, ints)"
    for key, value in stats.items():
        assert isinstance(value, int) and not isinstance(value, bool) and value >= 0, (
            f"{who}: memory_stats()[{key!r}] must be a non-negative int of bytes, got {value!r}")
    for precision in backend.supported_precisions():
        flops = call_checked(who, f"peak_flops({precision!r})", lambda p=precision: backend.peak_flops(p))
        assert flops is None or (isinstance(flops, (int, float)) and not isinstance(flops, bool)
                                 and math.isfinite(flops) and flops > 0), (
            f"{who}: peak_flops({precision!r}) must be a positive number or None, got {flops!r}")


BACKEND_CHECKS = [backend_identity, backend_device, backend_precisions, backend_runtime]

__all__ = ["BACKEND_CHECKS", *(check.__name__ for check in BACKEND_CHECKS)]
