"""Where each key of a run config came from (a line of the file, ``--set``, the default), and error
lines that name every key an error is about.

An error about one key reads ``run.toml:7: model.encoder.heads: MESSAGE``. An error about keys
that do not fit together also names the others and where each came from, and when the user typed
one of them with ``--set`` while the key the check names came from the file, the line leads with
what the user typed: ``--set model.d_model=130: does not fit model.encoder.heads = 4
(translate.toml:22): 4 does not divide d_model 130``.

The other keys of an error are found in its message: full key paths (``data.max_target_len``),
and, for an option of a component, the names of its sibling options (``min_len``) and
``d_model``, the one value of the [model] table a component factory is given.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tomli_w

from seqkit.convert import format_path

ABSENT = object()
"""What a lookup gives for a path that names no key of the config."""

Lookup = Callable[[tuple], Any]


@dataclass(frozen=True)
class ConfigSource:
    """Where a RunConfig was read from, so that errors found after loading (by a task or
    component factory, by ``check_run_config``) still name file:line or ``--set``."""

    origin: str | None  # the file, None for a dict
    text: str | None  # its TOML text
    set_paths: frozenset  # key paths that --set overrides gave
    given: Any = None  # the file's (or dict's) data before overrides: what a default is not

    def typed(self, path: tuple) -> bool:
        """Whether an override gave the key at ``path`` (or a table above it)."""
        return typed(path, self.set_paths)

    def where(self, path: tuple) -> str:
        """``"--set "``, ``"FILE:LINE: "``, ``"FILE: "`` or ``""``: what goes before an error
        about the key at ``path``."""
        if self.typed(path):
            return "--set "
        if self.origin is None:
            return ""
        line = locate(self.text or "", path)
        return f"{self.origin}:{line}: " if line else f"{self.origin}: "

    def in_file(self, path: tuple) -> bool:
        return lookup_data(self.given, path) is not ABSENT


def blame(path: tuple, message: str, source: ConfigSource, lookup: Lookup,
          component_tables: list[tuple]) -> str:
    """The one error line for ``message`` about the key at ``path``, naming the other keys it is
    about with their values and origins. ``lookup(path)`` gives a key's value (or ABSENT);
    ``component_tables`` are the key paths of plugin component tables (task, model.encoder)."""
    key = format_path(path)
    related = related_keys(path, message, lookup, component_tables)
    typed = [other for other in related if source.typed(other)]
    if typed and not source.typed(path):
        lead = typed[0]
        others = [path, *(other for other in related if other != lead)]
        fits = ", ".join(_describe(other, source, lookup, "fit") for other in others)
        return f"--set {format_path(lead)}={show_value(lookup(lead))}: does not fit {fits}: {message}"
    line = f"{source.where(path)}{key}: {message}"
    if related:
        # from the file this line already names, a line number says where
        style = "file" if source.typed(path) else "line"
        line += f" (with {', '.join(_describe(other, source, lookup, style) for other in related)})"
    return line


def related_keys(path: tuple, message: str, lookup: Lookup, component_tables: list[tuple]) -> list[tuple]:
    """The keys other than ``path`` that ``message`` is about: full key paths of the config it
    mentions, and for an option of a component, the sibling options it names and d_model."""
    keys = _keys(path)
    found = [tuple(m.group(1).split(".")) for m in _DOTTED.finditer(message)]
    table = keys[:-1]
    if table in component_tables:
        for word in _WORD.findall(message):
            if word in (keys[-1], "name"):
                continue
            found.append(("model", "d_model") if word == "d_model" and table[0] == "model"
                         else (*table, word))
    related: list[tuple] = []
    for other in found:
        if other[: len(keys)] == keys or keys[: len(other)] == other or other in related:
            continue  # the key itself, a table above it or an option below it
        if lookup(other) is not ABSENT:
            related.append(other)
    return related


_DOTTED = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)")
_WORD = re.compile(r"(?<![\w.'\"])([A-Za-z_]\w*)(?![\w'\"]|\.\w)")


def _describe(path: tuple, source: ConfigSource, lookup: Lookup, style: str) -> str:
    """A key, its value and origin: ``model.d_model = 32 (run.toml:10)`` in the list of what a
    typed key does not fit (style "fit"); ``model.d_model = 32 at line 10`` (style "line") or
    ``... at run.toml:10`` (style "file") after the line of the key an error names."""
    text = f"{format_path(path)} = {show_value(lookup(path))}"
    fit = style == "fit"
    if source.typed(path):
        return f"{text} (--set)" if fit else f"{text} from --set"
    if not source.in_file(path):
        return f"{text} (the default)" if fit else f"{text}, the default"
    line = locate(source.text or "", path)
    if source.origin is None:
        return text
    where = f"{source.origin}:{line}" if line else source.origin
    if fit:
        return f"{text} ({where})"
    return f"{text} at line {line}" if style == "line" and line else f"{text} at {where}"


def show_value(value: Any) -> str:
    """A config value as TOML writes it (a component as its name)."""
    if hasattr(value, "name") and hasattr(value, "options"):  # a Component
        value = value.name
    if value is None:
        return "(not set)"
    if dataclasses.is_dataclass(value):
        return "{...}"
    try:
        return tomli_w.dumps({"v": value}).partition("=")[2].strip()
    except TypeError:
        return str(value)


def lookup_data(data: Any, path: tuple) -> Any:
    """The value at ``path`` of parsed TOML data, or ABSENT."""
    for key in _keys(path):
        if not isinstance(data, dict) or key not in data:
            return ABSENT
        data = data[key]
    return data


def lookup_config(config: Any, path: tuple) -> Any:
    """The value at ``path`` of a loaded config (dataclasses, components, dicts), or ABSENT."""
    value = config
    for key in _keys(path):
        if hasattr(value, "name") and hasattr(value, "options") and dataclasses.is_dataclass(value):
            if key == "name":
                value = value.name
                continue
            value = value.options  # a component's options are its table's keys
        if dataclasses.is_dataclass(value) and key in {f.name for f in dataclasses.fields(value)}:
            value = getattr(value, key)
        elif isinstance(value, dict) and key in value:
            value = value[key]
        else:
            return ABSENT
    return value


def typed(path: tuple, set_paths: Any) -> bool:
    """Whether an override (one of ``set_paths``, key tuples) gave the key at ``path`` (or a table
    above it); list indices in ``path`` are not keys."""
    keys = _keys(path)
    return any(keys[: len(set_path)] == set_path for set_path in set_paths)


def _keys(path: tuple) -> tuple:
    return tuple(k for k in path if isinstance(k, str))


# -- lines of keys in a TOML text -----------------------------------------------------------------

_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_PART = r"(?:[A-Za-z0-9_\-]+|\"[^\"]*\"|'[^']*')"
_KEY = re.compile(rf"^\s*({_PART}(?:\s*\.\s*{_PART})*)\s*=")


def _split_key(key: str) -> tuple[str, ...]:
    parts = re.findall(r"\"[^\"]*\"|'[^']*'|[^.\s]+", key)
    return tuple(p.strip("\"'") for p in parts)


def locate(text: str, path: tuple) -> int | None:
    """The 1-based line of the key (or table) at ``path`` in TOML ``text``, best effort: the line
    of the longest prefix of ``path`` that is found."""
    keys = _keys(path)
    lines: dict[tuple, int] = {}
    table: tuple = ()
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            table = _split_key(header.group(1))
            lines.setdefault(table, number)
            continue
        key = _KEY.match(line)
        if key:
            lines.setdefault(table + _split_key(key.group(1)), number)
    for end in range(len(keys), 0, -1):
        if keys[:end] in lines:
            return lines[keys[:end]]
    return None
