"""A trained model brought back for use: ``load`` a run folder or checkpoint into a ``Model`` that
generates, scores, draws attention and evaluates. ``seqkit.load`` is this ``load``."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from pathlib import Path
from typing import Any

import torch

from seqkit import checkpoint as ckpt
from seqkit.arguments import device_argument, integer_argument, manager_argument, path_argument
from seqkit.blame import exception_line, plugin_errors
from seqkit.config import RunConfig, load_config
from seqkit.data import encode_split
from seqkit.errors import CheckpointError, ConfigError, DataError, PluginCodeError, PluginError, SeqkitError
from seqkit.evaluate import evaluate
from seqkit.events import Events
from seqkit.generate import SearchConfig
from seqkit.inference import AttentionMap, Generation, attention_map, score_texts, search
from seqkit.interfaces import DTYPES, Task
from seqkit.model import SeqModel, build_model, task_label, task_model_shape
from seqkit.plugins import PluginManager, make_plugin_manager
from seqkit.readers import reading
from seqkit.run_folder import RunFolder
from seqkit.storage import not_a_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PRECISIONS = (*DTYPES, "int8")  # what load() takes: the autocast dtypes, and int8 on the CPU


def build_task(config: RunConfig, manager: PluginManager) -> Task:
    if config.task is None:
        raise ConfigError(f"task: missing [task] table; available tasks: {', '.join(manager.names('task'))}")
    registration = manager.get("task", config.task.name)
    try:
        return registration.factory(config.task.options)
    except ConfigError as exc:
        key = f"task.{exc.key}" if exc.key else "task"
        raise ConfigError(f"{key}: {str(exc).removeprefix(f'{exc.key}: ')}") from None
    except SeqkitError:
        raise
    except Exception as exc:  # a bug in the task plugin: name it (the traceback stays as the cause)
        raise PluginCodeError(f"task: plugin {registration.plugin}, task {registration.name!r}: "
                              f"{exception_line(exc)}") from exc



_model_plugin_errors = plugin_errors(lambda model, *args, **kwargs: model.manager)


class Model:
    """A trained model with its task: ``generate``, ``score``, ``attention``, ``evaluate``. Safe to
    call repeatedly from an application: inference mode, no global state changed (sampling uses
    its own random generator), nothing printed."""

    def __init__(self, model: SeqModel, task: Task, config: RunConfig, path: Path, meta: dict[str, Any],
                 manager: PluginManager, precision: str = "fp32"):
        self.model, self.task, self.config, self.path, self.meta = model, task, config, path, meta
        self.manager, self.precision = manager, precision
        self.int8_layers = None  # with precision int8: which layers run in int8 (seqkit.quantize)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @_model_plugin_errors
    def generate(self, texts: list[str] | str, *, beam: int = 1, nbest: int = 1, sample: bool = False,
                 temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, seed: int | None = None,
                 max_len: int | None = None, min_len: int = 0, length_penalty: float = 0.0,
                 no_repeat_ngram: int = 0, scores: bool = False, batch_size: int = 64,
                 compile: bool = False) -> list:
        """Outputs for source texts (a language model: continuations of prompts, prompt included).

        One string per text; with ``scores=True`` a :class:`~seqkit.inference.Generation` (text,
        total log-probability, token ids) instead; with ``nbest > 1`` a list of ``nbest`` of those
        per text, best first. ``max_len`` defaults to the config's ``data.max_target_len``. An
        empty source gives an empty output. A classifier or regressor returns its predictions.

        ``texts`` is a list (or tuple) of strings, and a list comes back; one ``str`` is one text,
        and its result alone comes back (``generate("seven") == "sept"``). Anything else is a
        :class:`~seqkit.errors.ConfigError`. ``compile=True`` decodes through the torch.compiled
        step (a decoder with a static cache, as the Transformer's; see seqkit.compiled_decode)."""
        max_len = self.config.data.max_target_len if max_len is None else max_len
        options = SearchConfig(max_len=max_len, min_len=min_len, beam=beam,
                               nbest=nbest, length_penalty=length_penalty, no_repeat_ngram=no_repeat_ngram,
                               sample=sample, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                               compile=compile, scores=scores)
        single = isinstance(texts, str)
        with self.autocast():
            found = search(self.model, self.task, self.config, texts, options, batch_size)
        rows = [found] if single else found
        shown = [[g if scores else g.text for g in row] for row in rows]
        shown = shown if nbest > 1 else [row[0] for row in shown]
        return shown[0] if single else shown

    @_model_plugin_errors
    def score(self, sources: list[str] | str | None, targets: list[str] | str | None = None,
              batch_size: int = 64) -> list[float | None] | float | None:
        """Total log-probability of each target given its source, end of sequence included
        (None for an empty source). A language model scores texts alone: ``score(texts)``.
        Lists give a list; one source string and one target string (or one text) give one score."""
        if targets is None:
            if not isinstance(sources, (str, list, tuple)):  # name the argument the caller gave
                raise ConfigError("sources: must be a string or a list of strings, got "
                                  f"{type(sources).__name__}")
            sources, targets = None, sources
        with self.autocast():
            return score_texts(self.model, self.task, self.config, sources, targets, batch_size)

    @_model_plugin_errors
    def attention(self, text: str, **search_options: Any) -> tuple[Generation, AttentionMap]:
        """The output for one source string and where each output token attended in the source
        (a list of texts is a :class:`~seqkit.errors.ConfigError`: one map is for one source).
        ``search_options`` are those of :meth:`generate` that shape one output (beam, max_len, ...)."""
        known = {f.name for f in dataclasses.fields(SearchConfig)}
        unknown = sorted(set(search_options) - known)
        if unknown:
            raise ConfigError(f"attention: unknown option {unknown[0]!r}; options: "
                              f"{', '.join(sorted(known))}")
        options = SearchConfig(**{"max_len": self.config.data.max_target_len, **search_options})
        with self.autocast():
            return attention_map(self.model, self.task, self.config, text, options)

    def autocast(self):
        """The precision context generation runs in (fp32 and int8: none)."""
        if self.precision in ("fp32", "int8"):
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=DTYPES[self.precision])

    @_model_plugin_errors
    def use_data(self, split: str, path: str | Path) -> None:
        """Read ``split`` from ``path`` (a file in the task's format) from now on."""
        if not isinstance(split, str):
            raise ConfigError(f"split: must be a split name (str), got {type(split).__name__}")
        path = path_argument(path, "path")
        options = self.config.task.options
        names = {f.name for f in dataclasses.fields(options)} if dataclasses.is_dataclass(options) else set()
        if split not in names:
            raise ConfigError(f"task {self.config.task.name!r} has no file option {split!r} to replace")
        if (kind := not_a_file(path)) is not None:
            raise DataError(f"{path}: {kind}, not a data file")
        if not path.exists():
            raise DataError(f"{path}: no such data file")
        self.config.task.options = dataclasses.replace(options, **{split: path})
        state = self.task.state_dict()
        self.task = build_task(self.config, self.manager)
        self.task.load_state_dict(state)

    @_model_plugin_errors
    def evaluate(self, split: str = "test", samples: int = 0,
                 events: Events | None = None) -> tuple[dict[str, float], list[dict]]:
        """Metrics on a split of the task's data, and the first ``samples`` predictions.
        ``events`` hears of its two phases (encoding the split, evaluating and decoding it).

        Every example of the split is scored (whatever ``data.too_long`` says, which is for
        training): one longer than the data limits is truncated for the model and its prediction
        scored against the whole reference; one with no source token is an empty prediction. The
        metrics count them: ``examples``, and when not 0, ``truncated``, ``empty`` and the
        fraction of source and target tokens that are <unk> (``source_unk_rate``,
        ``target_unk_rate``)."""
        samples = integer_argument(samples, "samples")
        events = Events.of(events)
        with events.timed(f"encoding {split}"), reading(bad_lines=self.config.data.bad_lines):
            encoded = encode_split(self.task, split, self.config.data, evaluation=True)
        with events.timed(f"evaluating on {split} (loss, decoding {len(encoded):,} examples)"):
            metrics, predictions = evaluate(self.model, self.task, encoded, device=self.device,
                                            batch_tokens=self.config.data.batch_tokens,
                                            max_len=self.config.data.max_target_len)
        counts = {k: v for k, v in encoded.stats.items() if k in ("truncated", "empty") and v}
        unknown = {f"{side}_unk_rate": rate for side, rate in encoded.unk_rates().items() if rate}
        metrics = {**metrics, "examples": len(encoded), **counts, **unknown}
        shown = [{"source": encoded.examples[i].source, "reference": encoded.examples[i].target,
                  "prediction": p} for i, p in enumerate(predictions[:samples])]
        return metrics, shown


@plugin_errors(lambda *args, **kwargs: kwargs.get("manager"))
def load(run_or_checkpoint: str | Path, *, manager: PluginManager | None = None,
         device: str | torch.device = "cpu", precision: str = "fp32") -> Model:
    """A trained model from a run folder (its best checkpoint) or a checkpoint file, on ``device``,
    generating in ``precision`` (fp32, bf16 or fp16 autocast; int8: the linear and recurrent layers
    quantized for the CPU, see seqkit.quantize)."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ConfigError(f"precision: must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    path = path_argument(run_or_checkpoint, "run_or_checkpoint")
    manager = manager_argument(manager)
    device = device_argument(device)
    if precision == "int8" and torch.device(device).type != "cpu":
        raise ConfigError(f"precision: int8 inference runs on the CPU only, not on {device}")
    if not path.exists():
        raise CheckpointError(f"{run_or_checkpoint}: no such run folder or checkpoint")
    if path.is_dir():
        path = RunFolder(path).best if RunFolder(path).best.exists() else RunFolder(path).latest_checkpoint()
        if path is None:
            raise CheckpointError(f"{run_or_checkpoint}: no checkpoint in this run folder")
    manager = manager or make_plugin_manager()
    try:
        tensors, meta = ckpt.load_tensors(path)
    except CheckpointError:
        if _is_config_file(path):
            raise CheckpointError(f"{path}: a config file, not a run folder or checkpoint (train it "
                                  f"with: seqkit run {path})") from None
        raise
    # The metadata passed its checksum but may still be wrong (written by a buggy plugin or by
    # hand): whatever it breaks is a CheckpointError naming the file and the part.
    part = "metadata"
    try:
        ckpt.check_meta(meta, path, manager)
        part = "stored config"
        if not isinstance(meta.get("config"), str):
            raise TypeError("not a TOML text")
        # a bare component name that has since become ambiguous resolves to the plugin recorded
        config = load_config(ckpt.pin_components(tomllib.loads(meta["config"]), meta, manager),
                             manager=manager)
        part = "task state"
        task = build_task(config, manager)
        if not isinstance(meta.get("task_state"), dict):
            raise TypeError(f"expected a JSON object, got {type(meta.get('task_state')).__name__}")
        task.load_state_dict(meta["task_state"])
        part = "model"
        model = build_model(config.model, task_model_shape(task, task_label(manager, config.task.name)),
                            manager)
    except (CheckpointError, PluginError):  # PluginCodeError too: the plugin's, not the file's
        raise
    except (SeqkitError, KeyError, IndexError, AttributeError, TypeError, ValueError, RuntimeError,
            tomllib.TOMLDecodeError, MemoryError, RecursionError, OverflowError) as exc:
        detail = (str(exc).splitlines() or [""])[0] or type(exc).__name__
        if isinstance(exc, KeyError):
            detail = f"missing {detail}"
        raise CheckpointError(f"{path}: damaged checkpoint: its {part} is wrong: {detail}") from None
    ckpt.load_weights(model, tensors, path)
    loaded = Model(model.to(device).eval(), task, config, path, meta, manager, precision)
    if precision == "int8":
        from seqkit.quantize import quantize_int8

        who = {part: f"plugin {manager.get(part, component.name).plugin}, {part} {component.name!r}"
               for part, component in (("encoder", config.model.encoder), ("decoder", config.model.decoder))
               if component is not None}
        loaded.int8_layers = quantize_int8(loaded.model, who)
    return loaded


def _is_config_file(path: Path) -> bool:
    """Whether ``path`` reads as a TOML run config (a common slip: ``seqkit eval run.toml``)."""
    if path.suffix == ".toml":
        return True
    try:
        if not path.is_file() or path.stat().st_size > 1 << 20:  # a pipe would wait for a writer
            return False
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return bool(data) and set(data) <= {f.name for f in dataclasses.fields(RunConfig)}
