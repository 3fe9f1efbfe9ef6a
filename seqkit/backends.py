"""Choosing a device backend by name, or ``auto``: the available backend of highest priority."""

from __future__ import annotations

import logging

from seqkit.blame import exception_line
from seqkit.errors import BackendUnavailableError, ConfigError, PluginError
from seqkit.interfaces import Backend
from seqkit.plugins import PluginManager, Registration, make_plugin_manager

log = logging.getLogger(__name__)


def backends(manager: PluginManager | None = None) -> list[Backend]:
    """Every registered backend, instantiated, highest priority first. A plugin's backend that
    cannot be built is left out with a warning naming it (a PluginError in strict mode): one
    broken third-party backend must not stop runs on every other."""
    manager = manager or make_plugin_manager()
    found = []
    for reg in manager.registrations("backend"):
        try:
            found.append(_build(reg))
        except PluginError as exc:
            if manager.strict:
                raise
            log.warning("%s; left out", exc)
    return sorted(found, key=lambda b: -b.priority)


def _build(reg: Registration) -> Backend:
    who = f"plugin {reg.plugin}: backend {reg.name!r}"
    try:
        backend = reg.factory()
    except PluginError:  # its reference does not import: it names plugin and backend
        raise
    except Exception as exc:
        raise PluginError(f"{who}: building it raised {exception_line(exc)}") from exc
    if not isinstance(backend, Backend):
        raise PluginError(f"{who}: is not a seqkit Backend (its factory returned "
                          f"{type(backend).__name__})")
    return backend


def get_backend(name: str = "auto", manager: PluginManager | None = None) -> Backend:
    """The backend called ``name`` if it is available here; ``auto`` picks the best available."""
    from seqkit.arguments import manager_argument

    if not isinstance(name, str):
        raise ConfigError(f"backend: must be a backend name ('cpu', 'cuda', 'auto'), "
                          f"got {type(name).__name__}")
    candidates = backends(manager_argument(manager))
    available = [b for b in candidates if b.is_available()]
    names = ", ".join(b.name for b in available) or "none"
    if name == "auto":
        if not available:
            raise BackendUnavailableError("no device backend is available (all disabled?)")
        return available[0]
    for backend in candidates:
        if backend.name == name:
            if backend.is_available():
                return backend
            raise BackendUnavailableError(
                f"backend {name!r} is not available here; available: {names}"
            )
    known = ", ".join(b.name for b in candidates) or "none"
    raise BackendUnavailableError(f"unknown backend {name!r}; known: {known}; available: {names}")


def resolve_precision(backend: Backend, precision: str = "auto") -> str:
    """``auto`` -> the backend's default; anything else must be one the backend supports."""
    if precision == "auto":
        return backend.default_precision()
    if precision not in backend.supported_precisions():
        supported = ", ".join(backend.supported_precisions())
        raise BackendUnavailableError(
            f"precision {precision!r} is not supported by backend {backend.name!r}; "
            f"supported: {supported}"
        )
    return precision
