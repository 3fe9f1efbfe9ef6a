"""Finding, loading and isolating plugins, and the registry of what they register.

``make_plugin_manager()`` builds a fresh manager on every call: it walks the entry points of group
``seqkit`` one by one. A plugin that fails to import, implements a hook seqkit does not define,
raises inside a hook, registers a config class whose defaults seqkit's own converter rejects, or
takes a name a built-in plugin has, is skipped and recorded with its error; every other plugin
works. ``SEQKIT_STRICT_PLUGINS=1`` (or ``strict=True``) makes any such failure a PluginError.
``SEQKIT_DISABLE_PLUGINS=a,b`` (or ``disable=``) blocks plugins by name.

Two third-party plugins registering one name both stay loaded, whatever order they load in: the
bare name becomes ambiguous (looking it up is an error naming both), and ``<plugin>:<name>``
(``seqkit_a:cnn``) picks one. Strict mode makes such a clash fatal.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.metadata
import importlib.util
import inspect
import logging
import os
import re
import sys
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import click
import pluggy

from seqkit import hookspecs
from seqkit.convert import KeyPathError, convert, field_types, to_toml_data
from seqkit.errors import ConfigError, PluginError, RegistryError

log = logging.getLogger(__name__)

GROUP = "seqkit"
KINDS = ("encoder", "decoder", "task", "backend", "command")
# hook name -> kind of what it registers
HOOK_KINDS = {
    "register_encoders": "encoder",
    "register_decoders": "decoder",
    "register_tasks": "task",
    "register_backends": "backend",
    "register_commands": "command",
}
# hook name -> the arguments seqkit passes it (a hook may take fewer)
HOOK_ARGUMENTS = {hook: ("cli",) if kind == "command" else ("register",) for hook, kind in HOOK_KINDS.items()}
# Distribution of seqkit itself: its built-in plugins load first, and a third-party plugin that
# registers a built-in name is broken (whatever it is called), so built-in names never change meaning.
CORE_DISTRIBUTION = "seqkit"
QUALIFIER = ":"  # "<plugin>:<name>" picks one plugin's registration


@dataclass(frozen=True)
class Registration:
    """One registered component: what it is, how to build it, and who provided it."""

    kind: str
    name: str
    target: Callable[..., Any] | str  # the factory, or "module:attribute" naming it
    config_class: type | None
    plugin: str
    distribution: str | None
    version: str | None

    @property
    def module(self) -> str | None:
        """The module holding the factory, read from the reference without importing it."""
        if isinstance(self.target, str):
            return self.target.partition(":")[0]
        return getattr(self.target, "__module__", None)

    def loaded(self) -> Callable[..., Any] | None:
        """The factory when getting it imports nothing (resolved already, or its module imported
        already); None otherwise, and for a reference that does not resolve. Never raises: for
        code that only looks (which plugin built this object?) and must not import a plugin."""
        if not isinstance(self.target, str):
            return self.target
        if self.module not in sys.modules:
            return None
        try:
            return self.factory
        except PluginError:
            return None

    @property
    def factory(self) -> Callable[..., Any]:
        """The factory, imported on first use when the plugin named it as "module:attribute": listing
        plugins and their commands then imports none of the plugin's heavy modules (torch)."""
        if isinstance(self.target, str):
            module, _, attribute = self.target.partition(":")
            try:
                factory = getattr(importlib.import_module(module), attribute)
            except Exception as exc:  # an import error or a missing name is the plugin's bug
                raise PluginError(f"plugin {self.plugin}: {self.kind} {self.name!r}: cannot import its "
                                  f"factory {self.target}: {type(exc).__name__}: {exc}") from exc
            if not callable(factory):
                raise PluginError(f"plugin {self.plugin}: {self.kind} {self.name!r}: {self.target} is "
                                  "not callable")
            object.__setattr__(self, "target", factory)
        return self.target

    def provenance(self) -> str:
        """e.g. "seqkit_recurrent (seqkit 0.1.0)"."""
        return f"{self.plugin} ({self.distribution or '?'} {self.version or '?'})"

    @property
    def qualified_name(self) -> str:
        """e.g. "seqkit_recurrent:lstm": this registration, whoever else registers its name."""
        return f"{self.plugin}{QUALIFIER}{self.name}"


@dataclass
class PluginInfo:
    """What ``seqkit plugins`` shows about one plugin."""

    name: str
    distribution: str | None
    version: str | None
    status: str = "ok"  # ok | broken | disabled
    error: str | None = None
    hooks: list[str] = field(default_factory=list)
    registered: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in KINDS})
    # names another loaded third-party plugin registers too, one line each
    clashes: list[str] = field(default_factory=list)
    module: str | None = None  # the plugin's module (or its object's), to name it in tracebacks

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        registered = data.pop("registered")
        data.update({f"{kind}s": names for kind, names in registered.items()})
        return data


class PluginManager:
    """The loaded plugins (``plugins``), the pluggy manager (``hooks``) and the registry."""

    def __init__(self, strict: bool = False):
        self.strict = strict
        self.hooks = pluggy.PluginManager(GROUP)
        self.hooks.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        # kind -> name -> every loaded registration of that name, in load order (two or more only
        # for third-party plugins that clash: the bare name is then ambiguous)
        self._registry: dict[str, dict[str, list[Registration]]] = {kind: {} for kind in KINDS}
        # component objects built from a registration (by seqkit.model), to name them in errors
        self._built: weakref.WeakKeyDictionary[object, Registration] = weakref.WeakKeyDictionary()

    @classmethod
    def from_registrations(cls, registrations: Iterable[Registration]) -> PluginManager:
        """A manager holding just these registrations (for tests and the conformance suite)."""
        manager = cls()
        for reg in registrations:
            providers = manager._registry[reg.kind].setdefault(reg.name, [])
            if reg not in providers:
                providers.append(reg)
        return manager

    # -- lookups --------------------------------------------------------------------------------

    def names(self, kind: str) -> list[str]:
        """The names ``get`` takes for one kind, sorted: every registered name, and for a name two
        plugins register (ambiguous on its own) also its qualified forms ``plugin:name``."""
        names = set()
        for name, providers in self._registry[kind].items():
            names.add(name)
            if len(providers) > 1:
                names.update(reg.qualified_name for reg in providers)
        return sorted(names)

    def registrations(self, kind: str) -> list[Registration]:
        """Every loaded registration of one kind (clashing ones too), by name and plugin."""
        return sorted((reg for providers in self._registry[kind].values() for reg in providers),
                      key=lambda reg: (reg.name, reg.plugin))

    def get(self, kind: str, name: str) -> Registration:
        """The registration of ``name`` (or of ``plugin:name``); a RegistryError says what is
        available, or which plugins a clashing name could mean, otherwise."""
        if not isinstance(name, str):
            raise RegistryError(f"{kind} name must be a string, got {name!r}")
        plugin, qualified, bare = name.rpartition(QUALIFIER) if QUALIFIER in name else ("", "", name)
        providers = self._registry[kind].get(bare, [])
        if qualified:
            for reg in providers:
                if reg.plugin == plugin:
                    return reg
            raise RegistryError(f"unknown {kind} {name!r}: {self._plugin_lacks(kind, plugin, bare)}")
        if len(providers) == 1:
            return providers[0]
        if providers:
            raise RegistryError(_ambiguous(kind, name, providers))
        available = ", ".join(self.names(kind)) or "none"
        broken = [p.name for p in self.plugins.values() if p.status == "broken"]
        hint = f" (broken plugins: {', '.join(broken)})" if broken else ""
        raise RegistryError(f"unknown {kind} {name!r}; available: {available}{hint}")

    def _plugin_lacks(self, kind: str, plugin: str, name: str) -> str:
        """Why plugin ``plugin`` does not provide ``kind`` ``name``, in a few words."""
        info = self.plugins.get(plugin)
        if info is None:
            known = {reg.plugin for regs in self._registry[kind].values() for reg in regs}
            installed = ", ".join(sorted({*self.plugins, *known})) or "none"
            return f"no plugin named {plugin!r} is installed; installed: {installed}"
        if info.status != "ok":
            return f"plugin {plugin} is {info.status}" + (f" ({info.error})" if info.error else "")
        offered = ", ".join(info.registered[kind]) or "none"
        return f"plugin {plugin} registers no {kind} {name!r}; it registers: {offered}"

    def record_built(self, component: object, registration: Registration) -> None:
        """Remember that ``component`` was built by ``registration``'s factory."""
        try:
            self._built[component] = registration
        except TypeError:  # not weakly referenceable: it goes unnamed in errors, nothing worse
            pass

    def built_by(self, component: object) -> Registration | None:
        """The registration whose factory built ``component``, if seqkit built it."""
        try:
            return self._built.get(component)
        except TypeError:
            return None

    def broken(self) -> list[PluginInfo]:
        return [p for p in self.plugins.values() if p.status == "broken"]

    # -- loading --------------------------------------------------------------------------------

    def load(self, name: str, module: ModuleType | object, dist: Any = None) -> PluginInfo:
        """Register one plugin object and run its hooks; on failure record it as broken."""
        info = PluginInfo(
            name=name,
            distribution=dist.metadata["Name"] if dist is not None else None,
            version=dist.version if dist is not None else None,
            module=module.__name__ if isinstance(module, ModuleType) else type(module).__module__,
        )
        self.plugins[name] = info
        problem = self._hook_problem(module, name)
        if problem is not None:
            return self._fail(info, problem)
        try:
            self.hooks.register(module, name=name)
            self.hooks.check_pending()
        except Exception as exc:
            if self.hooks.is_registered(module):
                self.hooks.unregister(module)
            return self._fail(info, f"invalid hooks: {exc}")
        info.hooks = sorted(
            hook.name for hook in self.hooks.get_hookcallers(module) or []
        )
        try:
            staged = self._call_hooks(module, info)
        except PluginError as exc:  # what the plugin registered is invalid: seqkit's own words
            self.hooks.unregister(module)
            return self._fail(info, str(exc))
        clashes = []  # (new registration, one already loaded with its name)
        for reg in staged:  # conflicts first, so a plugin is wholly in or wholly out
            for other in self._registry[reg.kind].get(reg.name, []):
                if CORE_DISTRIBUTION in (other.distribution, reg.distribution):
                    self.hooks.unregister(module)
                    return self._fail(
                        info,
                        f"duplicate {reg.kind} {reg.name!r}: registered by {other.provenance()} "
                        f"and by {reg.provenance()}",
                    )
                clashes.append((reg, other))
        if clashes and self.strict:
            reg, other = clashes[0]
            self.hooks.unregister(module)
            return self._fail(info, f"{reg.kind} {reg.name!r} is registered by {other.provenance()} "
                                    f"and by {reg.provenance()}")
        for reg in staged:
            self._registry[reg.kind].setdefault(reg.name, []).append(reg)
            info.registered[reg.kind].append(reg.name)
        for reg, other in clashes:
            for mine, theirs in ((reg, other), (other, reg)):
                note = (f"{mine.kind} {mine.name!r} is also registered by {theirs.provenance()}: "
                        f"pick this one with name = \"{mine.qualified_name}\"")
                self.plugins[mine.plugin].clashes.append(note)
            log.warning("plugins %s and %s both register %s %r: the bare name is ambiguous; use "
                        "%r or %r, or disable one", other.plugin, reg.plugin, reg.kind, reg.name,
                        other.qualified_name, reg.qualified_name)
        return info

    def _call_hooks(self, module: object, info: PluginInfo) -> list[Registration]:
        """Call this plugin's hooks alone, collecting what it registers."""
        staged: list[Registration] = []
        others = [p for p in self.hooks.get_plugins() if p is not module]
        for hook_name in info.hooks:
            kind = HOOK_KINDS[hook_name]
            caller = self.hooks.subset_hook_caller(hook_name, remove_plugins=others)
            if kind == "command":
                group = click.Group()
                _call(hook_name, caller, cli=group)
                for cmd_name, command in group.commands.items():
                    staged.append(self._registration(kind, cmd_name, command, None, info))
                continue

            def register(name: str, factory: Callable, config_class: type | None = None,
                         _kind: str = kind) -> None:
                _check_registration(_kind, name, factory, config_class)
                _check_defaults(_kind, name, config_class)
                staged.append(self._registration(_kind, name, factory, config_class, info))

            _call(hook_name, caller, register=register)
        names = [(r.kind, r.name) for r in staged]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            kind, name = sorted(dupes)[0]
            raise PluginError(f"registers {kind} {name!r} twice")
        return staged

    def _hook_problem(self, module: object, name: str) -> str | None:
        """One line on what is wrong with the plugin's hook functions before pluggy sees them (its
        own errors span lines and suggest nothing): a hook name seqkit does not define, or
        required arguments a hook does not offer (defaulted ones, *args and **kwargs are fine).
        None when every hook is fine."""
        for attribute in sorted(dir(module)):
            try:
                options = self.hooks.parse_hookimpl_opts(module, attribute)
            except Exception:  # an attribute that cannot even be read: pluggy will say so
                continue
            if options is None:
                continue
            hook = options.get("specname") or attribute
            if hook not in HOOK_KINDS:
                close = difflib.get_close_matches(hook, list(HOOK_KINDS), n=1, cutoff=0.6)
                hint = f"did you mean {close[0]}?" if close else f"seqkit's hooks: {', '.join(HOOK_KINDS)}"
                return f"unknown hook {hook}; {hint}"
            offered = HOOK_ARGUMENTS[hook]
            try:
                parameters = inspect.signature(getattr(module, attribute)).parameters
            except (TypeError, ValueError):
                continue
            extra = [p for p, parameter in parameters.items()  # pluggy passes only these
                     if p not in offered and p != "self" and parameter.default is parameter.empty
                     and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)]
            if extra:
                names = ", ".join(repr(p) for p in extra)
                return (f"hook {hook} takes argument{'s' if len(extra) > 1 else ''} {names}, which "
                        f"seqkit does not offer; it offers: {', '.join(offered)}")
        return None

    @staticmethod
    def _registration(kind, name, factory, config_class, info: PluginInfo) -> Registration:
        return Registration(kind, name, factory, config_class, info.name, info.distribution,
                            info.version)

    def _fail(self, info: PluginInfo, error: str) -> PluginInfo:
        info.status, info.error = "broken", error.splitlines()[0] if error else error
        info.hooks = []
        log.warning("plugin %s skipped: %s", info.name, info.error)
        if self.strict:
            raise PluginError(f"plugin {info.name}: {info.error}")
        return info


def _plugin_names(disable: Any) -> tuple[str, ...]:
    """make_plugin_manager's ``disable``: plugin names (one str is one name, not its letters)."""
    names = (disable,) if isinstance(disable, str) else disable
    try:
        names = tuple(names)
    except TypeError:
        raise ConfigError(f"disable: must be plugin names (a list of strings), got "
                          f"{type(disable).__name__}") from None
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise ConfigError(f"disable[{i}]: must be a plugin name (a string), got {type(name).__name__}")
    return names


def _call(hook: str, caller: Callable, **arguments: Any) -> None:
    """Call one of a plugin's hooks; whatever it raises becomes a PluginError naming the hook."""
    try:
        caller(**arguments)
    except PluginError:  # seqkit's check of what was registered: it names the kind and name
        raise
    except Exception as exc:
        text = (str(exc).splitlines() or [""])[0]
        raise PluginError(f"hook {hook} raised {type(exc).__name__}" + (f": {text}" if text else "")) from exc


def _check_registration(kind: str, name: Any, factory: Any, config_class: Any) -> None:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-]*", name):
        raise PluginError(f"{kind} name must be a non-empty identifier, got {name!r}")
    if isinstance(factory, str):
        if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", factory):
            raise PluginError(f"{kind} {name!r}: a factory named by a string must read "
                              f"'module:attribute', got {factory!r}")
        _check_module_exists(kind, name, factory.partition(":")[0])
    elif not callable(factory):
        raise PluginError(f"{kind} {name!r}: factory is not callable")
    if config_class is not None and not dataclasses.is_dataclass(config_class):
        raise PluginError(f"{kind} {name!r}: config_class must be a dataclass")


def _check_module_exists(kind: str, name: str, module: str) -> None:
    """A factory's module must exist when the plugin loads; it is imported only when first used
    (``find_spec`` imports the parent packages, which are normally the plugin's own, loaded)."""
    try:
        found = module in sys.modules or importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    except Exception as exc:  # a parent package that raises on import, a malformed name
        raise PluginError(f"{kind} {name!r}: its factory's module {module} cannot be looked up: "
                          f"{type(exc).__name__}: {exc}") from None
    if not found:
        raise PluginError(f"{kind} {name!r}: its factory's module {module} does not exist")


def _check_defaults(kind: str, name: str, config_class: type | None) -> None:
    """The defaults of a config class must pass seqkit's own strict converter, as if written in
    the config file: ``layers: int = "two"`` is the plugin's bug, reported when it loads rather
    than when a user leaves the option out."""
    if config_class is None:
        return
    try:
        types = field_types(config_class)
    except Exception as exc:
        raise PluginError(f"{kind} {name!r}: config class {config_class.__name__}: cannot resolve "
                          f"its field types: {type(exc).__name__}: {exc}") from None
    for f in dataclasses.fields(config_class):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            try:
                value = f.default_factory()
            except Exception as exc:
                raise PluginError(f"{kind} {name!r}: default of {f.name}: {type(exc).__name__}: "
                                  f"{exc}") from None
        else:
            continue  # a required option: nothing to check
        if value is None:
            continue  # TOML has no null: None means "not set"
        try:
            convert(to_toml_data(value), types[f.name], (f.name,))
        except KeyPathError as exc:
            raise PluginError(f"{kind} {name!r}: config class {config_class.__name__} has a default "
                              f"of the wrong type: {exc}") from None


def _ambiguous(kind: str, name: str, providers: list[Registration]) -> str:
    who = " and by ".join(reg.provenance() for reg in providers)
    choices = " or ".join(f'"{reg.qualified_name}"' for reg in providers)
    return (f"{kind} {name!r} is ambiguous: registered by {who}; pick one with name = {choices}, "
            "or leave a plugin out with --disable-plugin NAME (SEQKIT_DISABLE_PLUGINS)")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    """Entry points of group seqkit, seqkit's own first, each name once (first on sys.path wins)."""
    seen: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=GROUP):
        seen.setdefault(ep.name, ep)

    def order(ep: importlib.metadata.EntryPoint) -> tuple[bool, str]:
        dist = ep.dist.metadata["Name"] if ep.dist is not None else ""
        return (dist != CORE_DISTRIBUTION, ep.name)

    return sorted(seen.values(), key=order)


def make_plugin_manager(
    *,
    disable: Iterable[str] = (),
    strict: bool | None = None,
    entry_points: bool = True,
    plugins: Iterable[tuple[str, object]] = (),
) -> PluginManager:
    """A fresh PluginManager: entry-point plugins (unless ``entry_points=False``) and then the
    given ``(name, module)`` pairs. ``disable`` adds to SEQKIT_DISABLE_PLUGINS; ``strict`` defaults
    to SEQKIT_STRICT_PLUGINS."""
    disable = _plugin_names(disable)
    manager = PluginManager(strict=_env_flag("SEQKIT_STRICT_PLUGINS") if strict is None else strict)
    disabled = set(_env_list("SEQKIT_DISABLE_PLUGINS")) | set(disable)
    for ep in _entry_points() if entry_points else []:
        if ep.name in disabled:
            manager.plugins[ep.name] = _disabled(ep.name, ep.dist)
            continue
        try:
            module = ep.load()
        except Exception as exc:
            info = PluginInfo(ep.name, *_dist_fields(ep.dist))
            manager.plugins[ep.name] = info
            manager._fail(info, f"cannot import {ep.value!r}: {type(exc).__name__}: {exc}")
            continue
        manager.load(ep.name, module, ep.dist)
    for name, module in plugins:
        if name in disabled:
            manager.plugins[name] = _disabled(name, None)
        else:
            manager.load(name, module)
    return manager


def _dist_fields(dist: Any) -> tuple[str | None, str | None]:
    return (dist.metadata["Name"], dist.version) if dist is not None else (None, None)


def _disabled(name: str, dist: Any) -> PluginInfo:
    return PluginInfo(name, *_dist_fields(dist), status="disabled")
