"""Strict conversion of TOML values into typed dataclasses, and back.

Supported field types: bool, int, float (an integer is accepted), str, pathlib.Path (a string,
relative paths taken from ``BASE_DIR``: the config file's folder), typing.Literal, Optional and
unions of those, list[X], tuple[X, ...], tuple[X, Y], dict[str, X], nested dataclasses, Any.
Unknown keys, wrong types and missing required keys raise ``KeyPathError`` naming the key path; the
config module adds file and line.

Two rules hold for every number, whatever the field: an integer fits in 64 bits (torch, numpy and
safetensors metadata all hold them as int64), and a float is finite and within float32's range
(every float ends up in float32 arithmetic: a learning rate of 1e308 or a NaN clip_norm would
turn into inf or silently disable what it configures).
"""

from __future__ import annotations

import contextvars
import dataclasses
import difflib
import functools
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

MISSING = dataclasses.MISSING
INT_RANGE = (-2**63, 2**63)  # [low, high): int64
FLOAT_LIMIT = 3.4028234663852886e38  # largest finite float32
BASE_DIR: contextvars.ContextVar[Path | None] = contextvars.ContextVar("BASE_DIR", default=None)
"""Relative paths in a config are relative to this folder (the config file's) while converting."""


class KeyPathError(Exception):
    """A value at ``path`` (a tuple of keys) is wrong; ``message`` says how."""

    def __init__(self, path: tuple[str | int, ...], message: str):
        super().__init__(f"{format_path(path)}: {message}")
        self.path = path
        self.message = message


def format_path(path: tuple[str | int, ...]) -> str:
    text = ""
    for key in path:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text or "<top level>"


def toml_type_name(value: Any) -> str:
    """The TOML name of a parsed value's type, for error messages."""
    for tp, name in ((bool, "boolean"), (int, "integer"), (float, "float"), (str, "string"),
                     (list, "array"), (dict, "table")):
        if isinstance(value, tp):
            return name
    return type(value).__name__


def type_name(tp: Any) -> str:
    """A readable name of a field type, e.g. "integer", "one of 'pre', 'post'"."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return "any value"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in args if a is not type(None))
    if origin in (list, tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"array of {len(args)} ({', '.join(type_name(a) for a in args)})"
        return f"array of {type_name(args[0])}" if args else "array"
    if origin is dict:
        return "table"
    if dataclasses.is_dataclass(tp):
        return "table"
    return {bool: "boolean", int: "integer", float: "float", str: "string", Path: "path (string)"}.get(
        tp, str(tp))


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """Resolved annotations of a dataclass's init fields (string annotations included)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def did_you_mean(name: str, choices: list[str]) -> str:
    """"; did you mean 'x'?" for the closest of ``choices``, or "" when none is close."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def suggest(name: str, choices: list[str]) -> str:
    """A did-you-mean hint, or the list of valid keys when none is close."""
    return did_you_mean(name, choices) or f"; valid keys: {', '.join(sorted(choices))}"


Resolver = typing.Callable[[Any, str, tuple], Any]
"""Builds a plugin component from its table: ``resolver(table, kind, path)``."""


def convert(value: Any, tp: Any, path: tuple = (), resolver: Resolver | None = None) -> Any:
    """``value`` (as parsed from TOML) checked and converted to type ``tp``. Dataclass fields with
    ``metadata={"component": KIND}`` are built by ``resolver`` (plugin components)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return convert_dataclass(value, tp, path, resolver)
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        hint = did_you_mean(value, [a for a in args if isinstance(a, str)]) if isinstance(
            value, str) else ""
        raise KeyPathError(path, f"expected {type_name(tp)}, got {value!r}{hint}")
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return convert(value, option, path, resolver)
            except KeyPathError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise KeyPathError(path, f"expected {type_name(tp)}, got {toml_type_name(value)} {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise _wrong_type(path, tp, value)
        if origin is tuple and args and args[-1] is not Ellipsis:  # fixed length: tuple[X, Y]
            if len(value) != len(args):
                raise KeyPathError(path, f"expected {type_name(tp)}, got {len(value)} values")
            return tuple(convert(v, t, (*path, i), resolver)
                         for i, (v, t) in enumerate(zip(value, args, strict=True)))
        item_type = args[0] if args else Any
        items = [convert(item, item_type, (*path, i), resolver) for i, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise _wrong_type(path, tp, value)
        value_type = args[1] if len(args) == 2 else Any
        return {k: convert(v, value_type, (*path, k), resolver) for k, v in value.items()}
    return convert_scalar(value, tp, path)


def convert_scalar(value: Any, tp: Any, path: tuple) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if not INT_RANGE[0] <= value < INT_RANGE[1]:
                raise KeyPathError(path, f"{value} is outside the 64-bit integer range "
                                         f"[-2**63, 2**63 - 1]")
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, int) and abs(value) > 2**53:
                raise KeyPathError(path, f"integer {value} is too large for a float")
            if not math.isfinite(value) or abs(value) > FLOAT_LIMIT:
                raise KeyPathError(path, f"must be a finite number within float32 range "
                                         f"(|x| <= 3.4e38), got {value!r}")
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Path:
        if isinstance(value, str) and value and "\x00" not in value:
            base = BASE_DIR.get()
            return Path(value) if base is None or Path(value).is_absolute() else base / value
    else:
        raise KeyPathError(path, f"unsupported field type {tp!r} in a config dataclass")
    raise _wrong_type(path, tp, value)


def _wrong_type(path: tuple, tp: Any, value: Any) -> KeyPathError:
    given = toml_type_name(value)
    if not isinstance(value, (dict, list)):
        given += f" {value!r}"
    return KeyPathError(path, f"expected {type_name(tp)}, got {given}")


def convert_dataclass(value: Any, cls: type, path: tuple = (), resolver: Resolver | None = None,
                      *, skip: tuple[str, ...] = ()) -> Any:
    """A ``cls`` instance from a TOML table; keys in ``skip`` are left for the caller."""
    if not isinstance(value, dict):
        raise _wrong_type(path, cls, value)
    types_ = field_types(cls)
    unknown = [k for k in value if k not in types_ and k not in skip]
    if unknown:
        key = unknown[0]
        raise KeyPathError((*path, key), "unknown key" + suggest(str(key), list(types_)))
    kwargs = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.name in value and "component" in f.metadata:
            if resolver is None:
                raise KeyPathError((*path, f.name), "plugin components need a registry")
            kwargs[f.name] = resolver(value[f.name], f.metadata["component"], (*path, f.name))
        elif f.name in value:
            kwargs[f.name] = convert(value[f.name], types_[f.name], (*path, f.name),
                                     resolver)
        elif f.default is MISSING and f.default_factory is MISSING:
            expected = type_name(types_[f.name])
            raise KeyPathError((*path, f.name), f"missing required key ({expected})")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:  # validation in __post_init__
        key = getattr(exc, "key", None)
        raise KeyPathError((*path, key) if key else path, str(exc)) from None


def to_toml_data(value: Any) -> Any:
    """A dataclass tree as plain TOML data; None values are left out (TOML has no null)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if hasattr(value, "to_toml_data"):
            return value.to_toml_data()
        return {f.name: to_toml_data(getattr(value, f.name)) for f in dataclasses.fields(value)
                if getattr(value, f.name) is not None}
    if isinstance(value, dict):
        return {k: to_toml_data(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [to_toml_data(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
