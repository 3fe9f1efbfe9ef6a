"""A backend plugin for tests: an always-available backend of a given name, device and priority."""

from __future__ import annotations

import torch

from seqkit import hookimpl
from seqkit.interfaces import Backend


def backend_plugin(name: str, device: str = "cpu", priority: int = 100):
    """A plugin object registering backend ``name`` on torch device ``device`` (``"meta"``: a device
    that is not the CPU, on which no tensor is ever put), picked first by ``auto`` at ``priority``."""

    class Fake(Backend):
        def is_available(self):
            return True

        def device(self, index=None):
            return torch.device(device)

        def device_name(self):
            return name

        def default_precision(self):
            return "fp32"

        def synchronize(self):
            pass

        def memory_stats(self):
            return {"allocated": 0, "peak": 0}

        def peak_flops(self, precision):
            return None

    Fake.name, Fake.priority = name, priority

    class Plugin:
        @hookimpl
        def register_backends(self, register):
            register(name, Fake)

    return Plugin()
