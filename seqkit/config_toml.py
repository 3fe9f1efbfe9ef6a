"""A resolved config as TOML text: top-level keys, then one table per section and component, every
option with its value. TOML has no null, so an option whose value is None (``ffn_size``: "None
means 4 * d_model") can only be a comment; with ``unset=True`` each is one, giving its type and
the note its config dataclass has beside it:

    # ffn_size: not set (integer; None means 4 * d_model)

The text loads back to an equal config either way.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
from typing import Any

import tomli_w

from seqkit.convert import field_types, to_toml_data, type_name


def render(config: Any, unset: bool = False) -> str:
    """``config`` (a dataclass tree with plugin components) as TOML text."""
    lines: list[str] = []
    _table(config, (), lines, unset)
    return "\n".join(lines).lstrip("\n") + "\n"


def _is_component(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and {f.name for f in dataclasses.fields(value)} == {
        "name", "options"}


def _entries(value: Any) -> list[tuple[str, Any, type | None]]:
    """(key, value, the dataclass declaring it) of a table, in declaration order."""
    if _is_component(value):
        entries: list[tuple[str, Any, type | None]] = [("name", value.name, None)]
        if dataclasses.is_dataclass(value.options):
            entries += _entries(value.options)
        return entries
    cls = type(value)
    return [(name, getattr(value, name), cls) for name in field_types(cls)]


def _table(value: Any, path: tuple[str, ...], lines: list[str], unset: bool) -> None:
    body, tables = [], []
    for key, item, owner in _entries(value):
        if item is None:
            if unset and owner is not None and not _component_field(owner, key):
                body.append(f"# {key}: not set ({_describe(owner, key)})")
        elif dataclasses.is_dataclass(item) or isinstance(item, dict):
            tables.append((key, item))
        else:
            body.append(f"{_key(key)} = {_value(to_toml_data(item))}")
    if body:
        if path:
            lines += ["", f"[{'.'.join(_key(k) for k in path)}]"]
        lines += body
    for key, item in tables:
        if isinstance(item, dict):
            _dict_table(to_toml_data(item), (*path, key), lines)
        else:
            _table(item, (*path, key), lines, unset)


def _dict_table(data: dict, path: tuple[str, ...], lines: list[str]) -> None:
    """A ``dict[str, X]`` option: a table of its keys."""
    lines += ["", f"[{'.'.join(_key(k) for k in path)}]"]
    lines += [f"{_key(k)} = {_value(v)}" for k, v in data.items()]


def _component_field(owner: type, key: str) -> bool:
    """A field holding a plugin component (task, model.encoder): unset means none is chosen."""
    return any(f.name == key and "component" in f.metadata for f in dataclasses.fields(owner))


def _describe(owner: type, key: str) -> str:
    """"integer; None means 4 * d_model": the type an option takes and its dataclass's note."""
    kind = type_name(field_types(owner)[key])
    note = field_notes(owner).get(key)
    return f"{kind}; {note}" if note else kind


@functools.cache
def field_notes(cls: type) -> dict[str, str]:
    """The comment beside each field in the source of dataclass ``cls`` (empty when the source
    cannot be read)."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    notes = {}
    for line in source.splitlines():
        match = re.match(r"^\s+(\w+)\s*:[^#]*?#\s*(.+?)\s*$", line)
        if match and match.group(1) in field_types(cls):
            notes.setdefault(match.group(1), match.group(2))
    return notes


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else tomli_w.dumps({key: 0}).rpartition(" = ")[0]


def _value(value: Any) -> str:
    """A TOML value on one line: arrays and tables inline."""
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    return tomli_w.dumps({"v": value}).partition(" = ")[2].rstrip("\n")

