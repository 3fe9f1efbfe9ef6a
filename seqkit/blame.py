"""Which plugin an exception came from: for errors raised inside plugin code.

An exception that is not a SeqkitError, raised by a plugin's factory, forward, init_cache,
reorder_cache or a task's methods, would otherwise reach the user as a traceback naming no plugin.
``blame(exc, manager)`` walks the traceback to the innermost frame whose module belongs to a loaded
plugin (the top-level package of a registration's factory, or the plugin's own module) and says
which plugin and, where it can tell, which of its components raised it:
``plugin seqkit_a, decoder 'cnn': ValueError: first line of the message``.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any, TypeVar

from seqkit.errors import PluginCodeError, SeqkitError

F = TypeVar("F", bound=Callable[..., Any])

# top-level packages that are never a plugin's own code, even when a plugin registers one of their
# callables as a factory (``register("x", object)``)
_NOT_PLUGIN_CODE = {"seqkit", "torch", "numpy", "click", "pluggy", "builtins", "functools",
                    *sys.stdlib_module_names}


@dataclass(frozen=True)
class Blame:
    """The plugin (and, when known, the component) whose code raised an exception."""

    plugin: str
    kind: str | None
    name: str | None

    def describe(self, exc: BaseException) -> str:
        """``plugin P, decoder 'y': Type: first line`` (or ``plugin P: Type: first line``)."""
        who = f"plugin {self.plugin}" + (f", {self.kind} {self.name!r}" if self.kind else "")
        return f"{who}: {exception_line(exc)}"


def error_line(exc: BaseException, manager: Any) -> str:
    """What the CLI prints after ``seqkit: error:`` for ``exc``: a SeqkitError's first line; the
    machine running out of memory, said as such; a plugin's exception, naming the plugin; anything
    else as an internal error. The last two point at --debug for the traceback."""
    if isinstance(exc, SeqkitError):
        line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, PluginCodeError) and isinstance(exc.__cause__, Exception) and \
                not isinstance(exc.__cause__, SeqkitError):  # the plugin's own traceback helps its author
            line += " (run with --debug for the traceback)"
        return line
    if _out_of_memory(exc):  # the machine's limit, not a bug: no blame
        return f"out of memory: {exception_line(exc)[:300]}; use smaller sizes"
    where = describe(exc, manager) or f"internal error: {exception_line(exc)}"
    return f"{where} (run with --debug for the traceback)"


def _out_of_memory(exc: BaseException) -> bool:
    """MemoryError, torch's OutOfMemoryError, or an allocator's 'cannot allocate' RuntimeError."""
    text = str(exc)
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or (
        isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text))


def exception_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (just ``Type`` without a message)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def blame(exc: BaseException, manager: Any) -> Blame | None:
    """The plugin whose code raised ``exc``: the innermost traceback frame in a plugin's modules,
    looking through ``__cause__``/``__context__`` when ``exc``'s own traceback has none."""
    if manager is None:
        return None
    owners = _module_owners(manager)
    if not owners:
        return None
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        frames = list(_frames(exc.__traceback__))
        for index in range(len(frames) - 1, -1, -1):
            plugin = _owner(frames[index].f_globals.get("__name__", ""), owners)
            if plugin is not None:
                kind, name = _component(manager, plugin, frames[: index + 1])
                return Blame(plugin, kind, name)
        exc = exc.__cause__ or exc.__context__
    return None


def describe(exc: BaseException, manager: Any) -> str | None:
    """``blame(exc, manager).describe(exc)``, or None when no plugin's code is in the traceback.
    A PluginCodeError already says it: its first line."""
    if isinstance(exc, PluginCodeError):
        return (str(exc).splitlines() or [""])[0]
    found = blame(exc, manager)
    return found.describe(exc) if found is not None else None


def plugin_errors(manager_of: Callable[..., Any]) -> Callable[[F], F]:
    """Decorator for a public API function: an exception raised inside a plugin's code (not a
    SeqkitError) leaves it as a PluginCodeError naming the plugin and component, the original
    chained as ``__cause__``. ``manager_of(*args, **kwargs)`` gives the plugin manager the call
    uses (None: a fresh one is made to look the plugin up). Running out of memory and seqkit's own
    bugs pass unchanged: neither is a plugin's fault."""
    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except SeqkitError:
                raise
            except Exception as exc:
                if _out_of_memory(exc):
                    raise
                try:
                    found = blame(exc, manager_of(*args, **kwargs) or _lookup_manager())
                except Exception:  # looking up the plugin must never replace the error itself
                    found = None
                if found is None:
                    raise
                raise plugin_code_error(found.describe(exc), exc) from exc
        return call  # type: ignore[return-value]
    return decorate


def _lookup_manager() -> Any:
    """A plugin manager only for finding which plugin owns a module: never strict, so a broken
    plugin elsewhere does not turn the error being explained into another one."""
    from seqkit.plugins import make_plugin_manager

    return make_plugin_manager(strict=False)


def plugin_code_error(message: str, exc: BaseException) -> PluginCodeError:
    """A PluginCodeError that is also an instance of ``exc``'s built-in class (a plugin's
    RuntimeError stays catchable as RuntimeError, as a ConfigError is a ValueError)."""
    base = next((c for c in type(exc).__mro__ if c.__module__ == "builtins"), Exception)
    if base in (Exception, BaseException) or issubclass(PluginCodeError, base):
        return PluginCodeError(message)
    try:
        cls = _PLUGIN_CODE_ERRORS.get(base) or type(
            "PluginCodeError", (PluginCodeError, base),
            {"__module__": PluginCodeError.__module__, "__str__": Exception.__str__,
             "__doc__": PluginCodeError.__doc__})
        error = cls(message)
    except TypeError:  # a built-in class with more arguments (UnicodeDecodeError): the plain one
        return PluginCodeError(message)
    _PLUGIN_CODE_ERRORS[base] = cls
    return error


_PLUGIN_CODE_ERRORS: dict[type, type] = {}


def _frames(tb: TracebackType | None) -> Iterator[FrameType]:
    while tb is not None:
        yield tb.tb_frame
        tb = tb.tb_next


def _module_owners(manager: Any) -> dict[str, str]:
    """Module prefix -> plugin: each plugin's module, each factory's module and their top-level
    packages. The longest matching prefix wins, so two plugins of one package stay apart."""
    owners: dict[str, str] = {}
    infos = getattr(manager, "plugins", {})
    for info in infos.values():
        if info.status == "ok" and info.module:
            _add(owners, info.module, info.name)
    for kind in ("encoder", "decoder", "task", "backend", "command"):
        for reg in manager.registrations(kind):
            module = reg.module if isinstance(reg.target, str) else \
                getattr(_unwrap(reg.target), "__module__", None)  # never imports a lazy factory
            if isinstance(module, str):
                _add(owners, module, reg.plugin)
    return owners


def _add(owners: dict[str, str], module: str, plugin: str) -> None:
    top = module.partition(".")[0]
    if top in _NOT_PLUGIN_CODE:
        return
    owners.setdefault(module, plugin)
    owners.setdefault(top, plugin)


def _owner(module: str, owners: dict[str, str]) -> str | None:
    while module:
        if module in owners:
            return owners[module]
        module = module.rpartition(".")[0]
    return None


def _unwrap(factory: Any) -> Any:
    """The function behind a factory: a partial's function, a click command's callback."""
    while isinstance(factory, functools.partial):
        factory = factory.func
    callback = getattr(factory, "callback", None)
    return callback if callback is not None and not isinstance(factory, type) else factory


def _component(manager: Any, plugin: str, frames: list[FrameType]) -> tuple[str | None, str | None]:
    """Which of ``plugin``'s registrations the frames (outermost first) ran: an object it built
    (``self`` of a method), its factory function itself, or its only registration. Factories not
    imported yet cannot have run: they are not imported to find out."""
    mine = [(reg, reg.loaded()) for kind in ("encoder", "decoder", "task", "backend", "command")
            for reg in manager.registrations(kind) if reg.plugin == plugin]
    for frame in reversed(frames):
        owner = frame.f_locals.get("self")
        if owner is not None:
            reg = manager.built_by(owner) if hasattr(manager, "built_by") else None
            if reg is None:
                reg = next((r for r, f in mine if isinstance(f, type)
                            and f.__module__.partition(".")[0] not in _NOT_PLUGIN_CODE
                            and isinstance(owner, f)), None)
            if reg is not None and reg.plugin == plugin:
                return reg.kind, reg.name
        code = frame.f_code
        reg = next((r for r, f in mine if getattr(_unwrap(f), "__code__", None) is code), None)
        if reg is not None:
            return reg.kind, reg.name
    if len(mine) == 1:
        return mine[0][0].kind, mine[0][0].name
    return None, None
