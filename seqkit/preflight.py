"""Everything ``seqkit run`` checks before its first step, without training: ``check_run_config``.

`seqkit config check` and the start of training share it, so a config that passes the check runs.
The model is first built on torch's meta device (no memory) under a guard that counts parameter
bytes as modules register them and stops as soon as the count passes the memory this machine has:
a billion layers is refused in seconds, not after eating the machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seqkit.config import RunConfig, locate_error
from seqkit.convert import did_you_mean
from seqkit.errors import BackendUnavailableError, ConfigError, PluginCodeError, PluginError, SeqkitError
from seqkit.plugins import PluginManager
from seqkit.readers import reading

# What evaluation reports besides the task's own metrics, by model kind (seqkit.evaluate).
CORE_METRICS = {
    "seq2seq": ("loss", "ppl", "token_accuracy"),
    "language_model": ("loss", "ppl", "token_accuracy"),
    "classifier": ("loss", "accuracy"),
    "regressor": ("loss",),
}
BYTES_PER_PARAMETER = 16  # fp32 weight + gradient + AdamW's two moments
# Parameter tensors a model may have: each costs Python work in every optimizer step, gradient
# clip and checkpoint (a 70B-parameter Llama has under 1,000), and counting stops here in seconds
# where a memory budget of tiny layers would take minutes to reach.
MAX_PARAMETER_TENSORS = 20_000
DEFAULT_D_MODEL = 256


@dataclass
class Estimate:
    """What a run will need: trainable parameters, and bytes of memory for them (with gradients
    and optimizer state) plus the task's data, against what this machine has available."""

    parameters: int
    memory_bytes: int
    available_bytes: int


def check_run_config(config: RunConfig, manager: PluginManager, prepared: Iterable[str] = ()) -> Estimate:
    """Every check ``seqkit run`` makes before its first step: the task builds and its data files
    read, the backend exists and is available here with the precision asked for, the components
    build and compose into a model of the task's kind, the model takes the configured length
    limits, ``train.best_metric`` is a metric of the task, and parameters, optimizer state and
    data fit in memory. Errors are SeqkitErrors naming the key (file:line when the config came
    from a file). The files of the ``prepared`` splits are not read again: they were read whole
    when their prepared data were made from the same contents."""
    try:
        with reading(bad_lines=config.data.bad_lines):  # the data files are read as a run reads them
            return _check(config, manager, set(prepared))
    except SeqkitError as exc:
        located = locate_error(exc, config)
        if located is exc:
            raise
        raise located from exc.__cause__  # a plugin's own exception stays the cause


def _check(config: RunConfig, manager: PluginManager, prepared: set[str]) -> Estimate:
    from seqkit.api import build_task
    from seqkit.backends import get_backend, resolve_precision
    from seqkit.model import task_label

    try:
        backend = get_backend(config.backend, manager)
    except BackendUnavailableError as exc:
        raise ConfigError(f"backend: {exc}") from None
    try:
        resolve_precision(backend, config.precision)
    except BackendUnavailableError as exc:
        raise ConfigError(f"precision: {exc}") from None
    available = available_memory(backend.device())
    task = build_task(config, manager)
    if "train" not in task.splits():
        raise ConfigError(f"task: task {config.task.name!r} has no train split (set task.train)")
    kind = task.model_kind
    if kind in ("seq2seq", "language_model") and config.data.max_target_len < 2:
        raise ConfigError(f"data.max_target_len: must be at least 2 to hold bos and eos, "
                          f"got {config.data.max_target_len}")
    _check_best_metric(config, task)
    _read_data_files(task, prepared)
    shape = _shape(task, task_label(manager, config.task.name))
    parameters = _check_model(config, shape, manager, available)
    data_bytes = int(getattr(task, "memory_estimate", lambda: 0)())
    need = parameters * BYTES_PER_PARAMETER + data_bytes
    if need > available:
        raise ConfigError(f"{_culprit(config)}: about {_gb(need)} of parameters, optimizer state and "
                          f"data for {_count(parameters)} parameters; this machine has "
                          f"{_gb(available)} available")
    return Estimate(parameters, need, available)


# -- metrics ------------------------------------------------------------------------------------


def metric_names(task: Any, has_valid: bool) -> list[str] | None:
    """The names ``train.best_metric`` may take for ``task``: the core's metrics of its model kind
    and the task's declared ones (``metric_directions()``, and a legacy ``metric_names``); with no
    valid split the trainer evaluates on train and also knows them as ``train_<name>``. None for a
    model kind seqkit does not know."""
    if task.model_kind not in CORE_METRICS:
        return None
    from seqkit.evaluate import declared_directions

    declared = declared_directions(task)
    legacy = getattr(type(task), "metric_names", None) or ()
    names = list(dict.fromkeys([*CORE_METRICS[task.model_kind], *declared, *legacy]))
    return names if has_valid else [*names, *(f"train_{n}" for n in names)]


def _check_best_metric(config: RunConfig, task: Any) -> None:
    """``train.best_metric`` is a metric the task reports, and its direction (higher or lower is
    better) is declared: the best checkpoint is never picked by a guess."""
    from seqkit.evaluate import metric_direction

    names = metric_names(task, "valid" in task.splits())
    wanted = config.train.best_metric
    if names is not None and wanted not in names:
        raise ConfigError(f"train.best_metric: {wanted!r} is not a metric of task {config.task.name!r}"
                          f"{did_you_mean(wanted, names)}; available: {', '.join(names)}")
    try:
        metric_direction(wanted, task)
    except ConfigError:
        raise ConfigError(f"train.best_metric: {wanted!r}: task {config.task.name!r} does not declare "
                          "whether higher or lower is better (its metric_directions() lacks it)") from None
    except PluginError as exc:
        raise PluginError(f"task {config.task.name!r}: {str(exc).partition(': ')[2]}") from None


# -- data ---------------------------------------------------------------------------------------


def _read_data_files(task: Any, prepared: set[str]) -> None:
    """Read every example of each split that comes from a file, without encoding: a missing,
    empty, non-UTF-8 or malformed file is the error ``run`` would give, file:line."""
    options = getattr(task, "config", None)
    if not dataclasses.is_dataclass(options):
        return
    for split in task.splits():
        if split not in prepared and isinstance(getattr(options, split, None), Path):
            for _ in task.examples(split):
                pass


def _shape(task: Any, who: str):
    """The model shape without fitting when the task can tell it (``shape_bound``: vocabularies at
    their configured maximum), else after fitting on the train split, as ``run`` does; checked as
    ``task_model_shape`` checks it, naming the plugin."""
    from seqkit.model import task_model_shape

    bound = getattr(task, "shape_bound", None)
    if bound is not None:
        return bound()
    try:
        return task_model_shape(task, who)
    except RuntimeError:  # needs fit()
        task.fit(task.examples("train"))
        return task_model_shape(task, who)


# -- model --------------------------------------------------------------------------------------


def _check_model(config: RunConfig, shape, manager: PluginManager, available: int) -> int:
    """Build the parts on the meta device under the memory guard, run them at the length limits
    there, then build the real model once (with its dry run), as the trainer will. Returns the
    number of trainable parameters."""
    from seqkit.interfaces import Decoder, Encoder
    from seqkit.model import SeqModel, _build_part, build_model, count_parameters

    model_config = config.model
    budget = available // BYTES_PER_PARAMETER
    parts = {}
    for part, expected in (("encoder", Encoder), ("decoder", Decoder)):
        with _ParameterGuard(budget) as guard:
            try:
                parts[part] = _build_part(part, getattr(model_config, part), model_config.d_model,
                                          manager, expected)
            except _TooLarge:
                raise ConfigError(_too_large(config, part, guard.count, available, guard.tensors)) from None
            except PluginCodeError as exc:
                # one tensor past what torch can even describe (2**63 bytes), on meta
                if "overflow" not in str(exc.__cause__ or exc):
                    raise
                raise ConfigError(_too_large(config, part, 2**63 // 4, available)) from None
    with _ParameterGuard(budget) as guard:
        try:
            meta_model = _compose(SeqModel, shape, model_config, parts, manager)
        except _TooLarge:
            raise ConfigError(_too_large(config, None, guard.count, available, guard.tensors)) from None
    parameters = count_parameters(meta_model)
    if parameters * BYTES_PER_PARAMETER > available:
        raise ConfigError(_too_large(config, None, parameters, available, exact=True))
    _check_lengths(meta_model, shape, config)
    build_model(model_config, shape, manager)  # the real build and dry run the trainer makes
    return parameters


def _compose(model_class, shape, model_config, parts, manager):
    """SeqModel on the meta device, after build_model's checks of kind and parts (run on a
    config without components, which cannot fail for lack of memory)."""
    from seqkit.model import _NEEDS

    needs_encoder, needs_decoder = _NEEDS.get(shape.kind, (False, False))
    for part, needed in (("encoder", needs_encoder), ("decoder", needs_decoder)):
        if needed and parts[part] is None:
            article = "an" if part == "encoder" else "a"
            raise ConfigError(f"model.{part}: a {shape.kind} model needs {article} {part}; "
                              f"available: {', '.join(manager.names(part)) or 'none'}")
        if not needed and parts[part] is not None:
            raise ConfigError(f"model.{part}: a {shape.kind} model has no {part}")
    if model_config.share_embeddings and (shape.source_features or shape.source_vocab != shape.target_vocab):
        raise ConfigError("model.share_embeddings: needs token sources and targets of one vocabulary")
    with torch.device("meta"):
        return model_class(shape, model_config, parts["encoder"], parts["decoder"])


@torch.no_grad()
def _check_lengths(model, shape, config: RunConfig) -> None:
    """Run the meta model at the configured length limits, so that a learned position table
    shorter than data.max_source_len or max_target_len fails now. Each part runs at 2 positions
    first: a part that fails there (its code cannot run on the meta device, as packed recurrent
    sequences read values) is left to the real dry run, so only a failure that the length itself
    causes is reported."""
    from seqkit.interfaces import EncoderOutput

    data, d = config.data, config.model.d_model
    with torch.device("meta"):
        if model.encoder is not None:
            def encode(length: int):
                source = (torch.zeros(1, length, shape.source_features) if shape.source_features
                          else torch.zeros(1, length, dtype=torch.long))
                return model.encode(source, torch.ones(1, length, dtype=torch.bool))

            _at_limit("encoder", "max_source_len", data.max_source_len, encode)
        if model.decoder is not None:
            enc = None if model.encoder is None else EncoderOutput(
                torch.zeros(1, 2, d), torch.ones(1, 2, dtype=torch.bool), None)
            _at_limit("decoder", "max_target_len", data.max_target_len,
                      lambda length: model.decode(torch.zeros(1, length, dtype=torch.long), enc))
            # evaluation decodes up to max_target_len new tokens through the cache, after BOS; no
            # memory here (a decoder may read the memory's mask, which meta tensors cannot give)
            _at_limit("decoder", "max_target_len", data.max_target_len,
                      lambda length: model.decoder.init_cache(None, 1, 1 + length))


def _at_limit(part: str, key: str, limit: int, run) -> None:
    failures = (ValueError, RuntimeError, NotImplementedError, IndexError, TypeError)
    try:
        run(min(2, limit))
    except failures:
        return  # not a length problem: the real dry run reports it
    try:
        run(limit)
    except failures as exc:
        text = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"model.{part}: cannot take data.{key} = {limit} positions: {text}") from None


class _TooLarge(SeqkitError):
    """Raised inside a guarded build (a SeqkitError, so the core passes it through as is)."""


class _ParameterGuard:
    """Inside: modules are built on the meta device, and registering parameters past ``budget``
    elements (in this thread) raises _TooLarge at once."""

    def __init__(self, budget: int):
        self.budget, self.count, self.tensors, self.thread = budget, 0, 0, threading.get_ident()
        self._seen: set[int] = set()
        self._stack = contextlib.ExitStack()

    def _hook(self, module, name, param):
        if param is None or threading.get_ident() != self.thread or id(param) in self._seen:
            return None
        self._seen.add(id(param))
        self.count += param.numel()
        self.tensors += 1
        if self.count > self.budget or self.tensors > MAX_PARAMETER_TENSORS:
            raise _TooLarge
        return None

    def __enter__(self) -> _ParameterGuard:
        from torch.nn.modules.module import register_module_parameter_registration_hook

        self._stack.enter_context(torch.device("meta"))
        self._stack.callback(register_module_parameter_registration_hook(self._hook).remove)
        return self

    def __exit__(self, *exc_info) -> None:
        self._stack.close()


def _too_large(config: RunConfig, part: str | None, count: int, available: int, tensors: int = 0,
               exact: bool = False) -> str:
    if tensors > MAX_PARAMETER_TENSORS:
        return (f"{_culprit(config, part)}: more than {MAX_PARAMETER_TENSORS:,} parameter tensors "
                f"(stopped counting at {_count(count)} parameters); every optimizer step would spend "
                f"its time on per-tensor overhead")
    amount = (f"about {_gb(count * BYTES_PER_PARAMETER)} of parameters and optimizer state for "
              f"{_count(count)} parameters" if exact else
              f"more than {_gb(count * BYTES_PER_PARAMETER)} of parameters and optimizer state "
              f"(stopped counting at {_count(count)} parameters, {BYTES_PER_PARAMETER} bytes each)")
    return f"{_culprit(config, part)}: {amount}; this machine has {_gb(available)} available"


def _culprit(config: RunConfig, part: str | None = None) -> str:
    """The key most likely to blame for a size: of the integer options of the component being
    built (all components and the task when ``part`` is None) and model.d_model, the one furthest
    above its default."""
    candidates: list[tuple[float, str]] = [(config.model.d_model / DEFAULT_D_MODEL, "model.d_model")]
    tables = [("task", config.task)] if part is None else []
    parts = ("encoder", "decoder") if part is None else (part,)
    tables += [(f"model.{p}", getattr(config.model, p)) for p in parts]
    for prefix, component in tables:
        options = component.options if component is not None else None
        if not dataclasses.is_dataclass(options):
            continue
        for f in dataclasses.fields(options):
            value = getattr(options, f.name)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                default = f.default if isinstance(f.default, int) and f.default > 0 else 1
                candidates.append((value / default, f"{prefix}.{f.name}"))
    ratio, key = max(candidates)
    return key if ratio > 1 else (f"model.{part}" if part else "model")


# -- memory -------------------------------------------------------------------------------------


def available_memory(device: torch.device | None = None) -> int:
    """Bytes this process may still use: MemAvailable of /proc/meminfo (the host holds the data
    and, on CPU, the model), and for a CUDA device the smaller of that and its free memory."""
    available = _mem_available()
    if device is not None and device.type == "cuda":
        with contextlib.suppress(RuntimeError):
            available = min(available, torch.cuda.mem_get_info(device)[0])
    return available


def _mem_available() -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    try:
        import os

        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: do not refuse


def check_memory(key: str, need_bytes: int, what: str) -> None:
    """ConfigError(key=key) when ``need_bytes`` of ``what`` exceed the memory available here; for
    tasks and components that can tell a size is impossible before building it."""
    available = _mem_available()
    if need_bytes > available:
        raise ConfigError(f"about {_gb(need_bytes)} of {what}; this machine has {_gb(available)} available",
                          key=key)


def _gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB" if n >= 1e8 else f"{n / 1e6:.3g} MB"


def _count(n: int) -> str:
    for size, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.3g}{suffix}"
    return str(n)
