"""Run configuration: TOML into dataclasses, strictly.

A run file has top-level keys (seed, backend, precision) and the tables [task], [model],
[model.encoder], [model.decoder] and [train]. The tables of plugin components name the component
(``name = "lstm"``) and hold its options, which are checked against the config dataclass the plugin
registered. Every error names the key path, with file:line where the key is in a file.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from seqkit.config_blame import ConfigSource, blame, lookup_config, lookup_data, typed
from seqkit.config_blame import locate as locate  # re-exported: where a key is in a TOML text
from seqkit.convert import (
    BASE_DIR,
    KeyPathError,
    convert_dataclass,
    did_you_mean,
    field_types,
    format_path,
    to_toml_data,
)
from seqkit.errors import ConfigError, RegistryError
from seqkit.plugins import PluginManager, make_plugin_manager

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

log = logging.getLogger(__name__)


@dataclass
class Component:
    """A plugin component chosen by ``name``, with ``options`` of the plugin's config dataclass."""

    name: str
    options: Any = None

    def to_toml_data(self) -> dict[str, Any]:
        return {"name": self.name, **(to_toml_data(self.options) if self.options else {})}


def component(kind: str) -> Any:
    """A config field holding an optional plugin component of ``kind``."""
    return field(default=None, metadata={"component": kind})


@dataclass
class ModelConfig:
    """[model]: the components and the sizes they share."""

    encoder: Component | None = component("encoder")
    decoder: Component | None = component("decoder")
    d_model: int = 256  # width of embeddings, encoder memory and decoder hidden states
    tie_embeddings: bool = True  # output head shares the target embedding's weights
    share_embeddings: bool = False  # source and target share one embedding (one vocabulary)
    pool: Literal["mean", "last", "first"] = "mean"  # encoder-only models: how to pool positions
    embedding_dropout: float = 0.1

    def __post_init__(self):
        if self.d_model < 1:
            raise _invalid("d_model", f"must be positive, got {self.d_model}")
        if not 0.0 <= self.embedding_dropout < 1.0:
            raise _invalid("embedding_dropout", f"must be in [0, 1), got {self.embedding_dropout}")


@dataclass
class DataConfig:
    """[data]: batching and length limits, for every task."""

    batch_tokens: int = 4096  # token budget per batch (padding included), like fairseq's --max-tokens
    max_source_len: int = 256  # tokens (or feature vectors) of a source
    max_target_len: int = 256  # tokens of a target, bos and eos included
    too_long: Literal["drop", "truncate"] = "drop"  # what happens to longer examples (counted)
    bad_lines: Literal["error", "skip"] = "error"  # a line a reader cannot read: stop, or skip it (counted)
    prepare: bool = True  # train from the train split encoded once into memory-mapped files (seqkit prepare)
    fit_examples: int = 500_000  # task.fit (tokenizers) sees at most this many, a seeded sample; 0: all

    def __post_init__(self):
        for name in ("batch_tokens", "max_source_len", "max_target_len"):
            if getattr(self, name) < 1:
                raise _invalid(name, f"must be at least 1, got {getattr(self, name)}")
        if self.fit_examples < 0:
            raise _invalid("fit_examples", f"must be 0 (all) or more, got {self.fit_examples}")


@dataclass
class TrainConfig:
    """[train]: optimisation, evaluation and checkpoints."""

    steps: int = 1000  # optimizer steps
    lr: float = 1e-3  # peak learning rate
    schedule: Literal["inverse_sqrt", "cosine", "constant"] = "inverse_sqrt"
    warmup_steps: int = 100  # linear warm-up from 0 to lr
    min_lr: float = 0.0  # where cosine ends
    betas: tuple[float, float] = (0.9, 0.98)  # AdamW
    weight_decay: float = 0.0
    clip_norm: float = 1.0  # gradient-norm clipping; 0 disables it
    accumulate: int = 1  # batches per optimizer step
    label_smoothing: float = 0.0
    eval_every: int = 200  # steps between evaluations (and checkpoints)
    eval_examples: int = 0  # valid examples decoded for generation metrics; 0 = all
    best_metric: str = "loss"  # the metric that picks the best checkpoint and early stopping
    patience: int = 0  # evaluations without improvement before stopping; 0 = never stop early
    keep_last: int = 2  # checkpoints kept besides the best
    log_every: int = 50  # steps between lines in metrics.jsonl
    compile: bool = False  # torch.compile the model

    def __post_init__(self):
        for name in ("steps", "accumulate", "eval_every", "log_every", "keep_last"):
            if getattr(self, name) < 1:
                raise _invalid(name, f"must be at least 1, got {getattr(self, name)}")
        for name in ("lr", "warmup_steps", "min_lr", "weight_decay", "clip_norm", "eval_examples",
                     "patience"):
            if getattr(self, name) < 0:
                raise _invalid(name, f"must not be negative, got {getattr(self, name)}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise _invalid("betas", f"must be in [0, 1), got {list(self.betas)}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise _invalid("label_smoothing", f"must be in [0, 1), got {self.label_smoothing}")


@dataclass
class RunConfig:
    """A whole run: what to learn ([task]), with what ([model]), how ([train]) and where."""

    task: Component | None = component("task")
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    backend: str = "auto"  # a registered backend name, or auto
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"


def _invalid(key: str, message: str) -> ConfigError:
    return ConfigError(message, key=key)


# -- loading ------------------------------------------------------------------------------------


def load_config(
    source: str | Path | dict[str, Any],
    overrides: list[str] | tuple[str, ...] = (),
    manager: PluginManager | None = None,
) -> RunConfig:
    """A validated RunConfig from a TOML file path (or an already parsed dict), after applying
    ``overrides`` of the form ``a.b.c=VALUE`` (VALUE parsed as TOML, else taken as a string)."""
    from seqkit.arguments import manager_argument, path_argument, texts_argument

    if not isinstance(source, dict):
        source = path_argument(source, "config")
    overrides = texts_argument(overrides, "overrides")
    manager = manager_argument(manager)
    text, origin, base = None, None, None
    if isinstance(source, dict):
        data = _deep_copy(source)
    else:
        # data paths become absolute: a run folder's config (and a checkpoint's) then works from
        # any working directory, as `seqkit eval runs/x` from elsewhere needs
        origin, base = str(source), Path(source).resolve().parent
        text, data = read_toml(Path(source))
    given, given_names = _deep_copy(data), component_names(data)
    set_paths = apply_overrides(data, overrides)
    source_of = ConfigSource(origin, text, frozenset(set_paths), given)
    manager = manager or make_plugin_manager()
    token = BASE_DIR.set(base)
    try:
        resolver = _component_resolver(manager, given_names, set_paths)
        config = convert_dataclass(data, RunConfig, (), resolver)
    except KeyPathError as exc:
        lookup = lambda path: lookup_data(data, path)  # noqa: E731
        raise ConfigError(blame(exc.path, exc.message, source_of, lookup, component_paths())) from None
    finally:
        BASE_DIR.reset(token)
    # not a dataclass field: equality, show and the stored config ignore where a config came from
    config._source = source_of
    return config


_KEY_PATH = re.compile(r"^([A-Za-z_][\w-]*(?:\.[\w-]+|\[\d+\])*): ")


def locate_error(exc: Exception, config: RunConfig) -> Exception:
    """``exc`` with file:line (or ``--set``) put before its message when the message starts with a
    key path of ``config`` (``model.encoder.heads: ...``) and the config came from a file, and
    with the other keys the message is about named with their origins (``seqkit.config_blame``);
    else ``exc`` unchanged. Factories raise ConfigError(key=...), the core words it as a key
    path: this is where it gets its place in the file back."""
    source = getattr(config, "_source", None)
    message = str(exc)
    match = _KEY_PATH.match(message)
    if source is None or match is None:
        return exc
    path = tuple(int(part) if part.isdigit() else part
                 for part in re.findall(r"[^.\[\]]+", match.group(1)))
    if path[0] not in field_types(RunConfig):
        return exc
    line = blame(path, message[match.end():], source, lambda p: lookup_config(config, p),
                 component_paths())
    if line == message:
        return exc
    located = copy.copy(exc)
    located.args = (line, *exc.args[1:])
    return located


def read_toml(path: Path) -> tuple[str, dict[str, Any]]:
    """The text and parsed data of a TOML file; errors name the file (and line)."""
    from seqkit.storage import not_a_file

    if (kind := not_a_file(path)) is not None:
        raise ConfigError(f"{path}: {kind}, not a config file")
    try:
        # a byte-order mark (Windows editors write one) is not part of the TOML text
        text = path.read_text(encoding="utf-8").removeprefix("\ufeff")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc).splitlines()[0]
        at = re.search(r" \(at line (\d+), column \d+\)$", message)
        where = f"{path}:{at.group(1)}" if at else str(path)
        raise ConfigError(f"{where}: invalid TOML: {message}") from None


def parse_override(override: str) -> tuple[list[str], Any]:
    """``"a.b.c=VALUE"`` -> (["a", "b", "c"], value); VALUE is TOML, or a bare string."""
    key, sep, raw = override.partition("=")
    keys = [k.strip() for k in key.split(".")]
    if not sep or not all(keys):
        raise ConfigError(f"--set {override!r}: expected KEY.PATH=VALUE")
    try:
        value = tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw  # bare words: --set model.encoder.name=lstm
    return keys, value


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> set[tuple]:
    """Apply ``--set`` overrides to ``data`` in place; returns the key paths they set."""
    set_paths = set()
    for override in overrides:
        keys, value = parse_override(override)
        table = data
        for i, key in enumerate(keys[:-1]):
            table = table.setdefault(key, {})
            if not isinstance(table, dict):
                raise ConfigError(f"--set {override}: {'.'.join(keys[:i + 1])} is not a table")
        table[keys[-1]] = value
        set_paths.add(tuple(keys))
    return set_paths


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def component_paths(cls: type = RunConfig, prefix: tuple = ()) -> list[tuple[str, ...]]:
    """Key paths of the plugin component tables of a config dataclass: task, model.encoder, ..."""
    paths = []
    for f in dataclasses.fields(cls):
        tp = field_types(cls).get(f.name)
        if "component" in f.metadata:
            paths.append((*prefix, f.name))
        elif dataclasses.is_dataclass(tp):
            paths.extend(component_paths(tp, (*prefix, f.name)))
    return paths


def component_names(data: dict[str, Any]) -> dict[tuple, str]:
    """The component name each component table of ``data`` gives, by key path."""
    names = {}
    for path in component_paths():
        table: Any = data
        for key in path:
            table = table.get(key) if isinstance(table, dict) else None
        if isinstance(table, dict) and isinstance(table.get("name"), str):
            names[path] = table["name"]
    return names


def _drop_options_of(previous: str, name: str, options: dict[str, Any], taken: set[str],
                     path: tuple, set_paths: set[tuple]) -> dict[str, Any]:
    """``options`` less those the config gave for component ``previous`` that ``name`` does not
    take, when an override changed the name: `--set model.encoder.name=lstm` on a Transformer's
    table keeps layers and dropout and drops heads (with a note). What the user typed with
    --set is never dropped: the new component must take it."""
    dropped = [k for k in options if k not in taken and not typed((*path, k), set_paths)]
    if dropped:
        log.warning("%s.name=%s: dropped %s.%s (options of %s)", format_path(path), name,
                    format_path(path), ", ".join(dropped), previous)
    return {k: v for k, v in options.items() if k not in dropped}


def _component_resolver(manager: PluginManager, given_names: dict[tuple, str] | None = None,
                        set_paths: set[tuple] = frozenset()):
    """Builds components; ``given_names`` are the names the config gave before overrides."""
    given_names = given_names or {}

    def resolve(table: Any, kind: str, path: tuple) -> Component:
        if not isinstance(table, dict):
            raise KeyPathError(path, f"expected a table with name = \"<{kind}>\"")
        name = table.get("name")
        if not isinstance(name, str):
            available = ", ".join(manager.names(kind)) or "none"
            raise KeyPathError((*path, "name"), f"missing {kind} name; available: {available}")
        try:
            registration = manager.get(kind, name)
        except RegistryError as exc:
            hint = did_you_mean(name, manager.names(kind))
            raise KeyPathError((*path, "name"), f"{exc}{hint}") from None
        options = {k: v for k, v in table.items() if k != "name"}
        previous = given_names.get(path)
        if previous is not None and previous != name:
            taken = set(field_types(registration.config_class)) if registration.config_class else set()
            options = _drop_options_of(previous, name, options, taken, path, set_paths)
        if registration.config_class is None:
            if options:
                key = next(iter(options))
                raise KeyPathError((*path, key), f"unknown key; {kind} {name!r} takes no options")
            return Component(name, None)
        return Component(name, convert_dataclass(options, registration.config_class, path))

    return resolve


# -- showing ------------------------------------------------------------------------------------


def config_to_toml(config: RunConfig, unset: bool = False) -> str:
    """The resolved config, defaults filled, as TOML that loads back to an equal config. With
    ``unset``, options whose value is None (TOML has no null) are comment lines saying so
    (``# ffn_size: not set (integer; None means 4 * d_model)``): what `seqkit config show`
    prints, so that it shows every option."""
    from seqkit.config_toml import render

    return render(config, unset)
