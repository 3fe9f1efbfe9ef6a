"""The Python API: ``seqkit.train`` runs a config, ``seqkit.load`` brings a trained model back
(see seqkit.trained). The CLI's run, train, eval and generate go through these same functions."""

from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqkit import checkpoint as ckpt
from seqkit.arguments import flag_argument, integer_argument, manager_argument, path_argument, texts_argument
from seqkit.backends import get_backend
from seqkit.blame import plugin_errors
from seqkit.config import RunConfig, load_config
from seqkit.contracts import check_task_state
from seqkit.distributed import launched_rank, process_group
from seqkit.errors import ConfigError, DataError, SeqkitError
from seqkit.events import EVENT_NAMES, Events, is_reporter
from seqkit.initialize import read_init, take_task_state
from seqkit.plugins import PluginManager, make_plugin_manager
from seqkit.preflight import check_run_config
from seqkit.prepared import PreparedSplit
from seqkit.progress import ConsoleProgress
from seqkit.readers import reading
from seqkit.run_data import fit, prepare_split, prepared_data
from seqkit.run_folder import RunFolder, RunFolderError, config_changes
from seqkit.trained import Model, build_task, load
from seqkit.trainer import Trainer


def resolve_config(config: str | Path | dict | RunConfig, overrides: list[str] | tuple[str, ...],
                   kwargs: dict[str, Any], manager: PluginManager) -> RunConfig:
    """A RunConfig from a path, a dict or a RunConfig, with ``--set`` strings and keyword overrides
    (``train__steps=100`` sets train.steps)."""
    if isinstance(config, RunConfig):
        if overrides or kwargs:
            raise ConfigError("overrides need a config file or dict, not a RunConfig")
        return config
    if not isinstance(config, dict):
        path_argument(config, "config")
    sets = [*overrides, *(f"{key.replace('__', '.')}={_toml_value(key, value)}"
                          for key, value in kwargs.items())]
    return load_config(config, sets, manager=manager)


def _toml_value(key: str, value: Any) -> str:
    import tomli_w

    try:
        return tomli_w.dumps({"v": value}).partition("=")[2].strip()
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: {type(value).__name__} is not a config value (a string, number, "
                          "bool, list or dict)") from None


@plugin_errors(lambda *args, **kwargs: kwargs.get("manager"))
def prepare(config: str | Path | dict | RunConfig, *, overrides: list[str] | tuple[str, ...] = (),
            events: Events | None = None, manager: PluginManager | None = None,
            **kwargs: Any) -> PreparedSplit:
    """Prepare ``config``'s train split as ``seqkit run`` does before its first step, without
    training: fit the task (or take the state fitted on the same data before), then encode the
    split once into memory-mapped files in the cache of prepared data ($SEQKIT_CACHE, else
    ~/.cache/seqkit). Every later run of a config over the same data and code starts from them.
    Returns the prepared split: ``folder``, ``len()``, ``stats`` (examples read, kept, dropped,
    truncated, tokens). ``events`` hears of each phase."""
    overrides = texts_argument(overrides, "overrides")
    manager = manager_argument(manager) or make_plugin_manager()
    events = _reporters(events, None)
    resolved = resolve_config(config, overrides, kwargs, manager)
    with reading(bad_lines=resolved.data.bad_lines):
        task = build_task(resolved, manager)
        if "train" not in task.splits():
            raise DataError(f"task {resolved.task.name!r}: no train split to prepare (task.train)")
        with events.timed("hashing the data files"):
            prepared = prepared_data(resolved, manager)
        fit(task, resolved.data, prepared, events)
        check_task_state(task, manager)
        return prepare_split(task, resolved.data, prepared, events)


@dataclass
class RunResult:
    folder: Path
    summary: dict[str, Any]
    test: dict[str, float] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)


@plugin_errors(lambda *args, **kwargs: kwargs.get("manager"))
def train(config: str | Path | dict | RunConfig, *, out: str | Path | None = None,
          overrides: list[str] | tuple[str, ...] = (), events: Events | None = None,
          progress: bool | Any | None = None, manager: PluginManager | None = None, test: bool = True,
          samples: int = 5, restart: bool = False, init: str | Path | None = None,
          **kwargs: Any) -> RunResult:
    """Train (or resume, when ``out`` holds a checkpoint), then evaluate the best model on the test
    split and decode a few samples. ``out`` defaults to runs/<config file name>. Under torchrun
    every process calls this; they train together, and rank 0 alone writes the run folder and
    evaluates on the test split (the others return an empty ``test``).

    ``progress`` shows what the run does: True writes a :class:`~seqkit.progress.ConsoleProgress`
    to standard error (a line rewritten in place on a terminal, plain lines elsewhere); False or
    None (the default: library code never prints) nothing; or pass your own reporter (a
    ConsoleProgress on another stream, an :class:`~seqkit.events.Events`). ``events`` is an Events
    (or any object with some of the methods step, evaluated, message, started, phase) that gets
    every event as well: the
    header's :class:`~seqkit.events.RunInfo`, each step (step, total, loss, tokens/s, lr), each
    evaluation's metrics, and the start and duration of each long phase. Under torchrun only
    rank 0 reports.

    A run folder is written by one process at a time (a second gets a RunFolderError). Resuming
    with a changed model, task, data or seed is an error naming the keys; changed ``train.*`` keys
    (more steps, another learning rate) apply from the resumed step on and are noted in config.toml
    (a comment line each, above the config in force). A folder with an earlier run but no readable
    checkpoint is an error unless ``restart=True``, which removes that run's files and starts over.

    ``init`` (a run folder or checkpoint) fine-tunes: a new run starts from its weights and
    tokenizers (the task is not fitted) instead of random weights; the config's ``[model]`` must be
    that run's (dropouts aside) and its task the same, else a ConfigError names the key. A run
    that resumes from its own checkpoint ignores ``init``.

    Errors are SeqkitErrors: a ConfigError for a bad argument or config, a DataError, a
    RunFolderError, a CheckpointError, a TrainingError (the loss diverged), a PluginCodeError
    naming the plugin whose code raised."""
    overrides = texts_argument(overrides, "overrides")
    if out is not None and str(out).strip() != "":  # empty: the RunFolderError below says why
        out = path_argument(out, "out")
    test, restart = flag_argument(test, "test"), flag_argument(restart, "restart")
    samples = integer_argument(samples, "samples")
    if init is not None:
        init = path_argument(init, "init")
    manager = manager_argument(manager)
    display = _display(progress)
    events = _reporters(events, display)
    try:
        return _train(config, out, overrides, kwargs, events, manager or make_plugin_manager(), test,
                      samples, restart, init)
    finally:  # the bar's line ends, however the run ends: what follows starts on its own line
        if isinstance(display, ConsoleProgress):
            display.close()


def _train(config: str | Path | dict | RunConfig, out: str | Path | None, overrides: list[str],
           kwargs: dict[str, Any], events: Events, manager: PluginManager, test: bool, samples: int,
           restart: bool, init: Path | None = None) -> RunResult:
    resolved = resolve_config(config, overrides, kwargs, manager)
    # every read of the data below (check, fit, encoding, test) follows data.bad_lines, whatever task reads
    with reading(bad_lines=resolved.data.bad_lines):
        return _train_resolved(config, resolved, out, events, manager, test, samples, restart, init)


def _train_resolved(config: str | Path | dict | RunConfig, resolved: RunConfig, out: str | Path | None,
                    events: Events, manager: PluginManager, test: bool, samples: int,
                    restart: bool, init: Path | None = None) -> RunResult:
    prepared = None  # where the prepared data are (rank 0 prepares them; see seqkit.run_data)
    if resolved.data.prepare:
        with events.timed("hashing the data files"), contextlib.suppress(SeqkitError):
            prepared = prepared_data(resolved, manager)  # (an unknown task: the check below says so)
    with events.timed("checking the config"):  # what `seqkit config check` checks, before anything is written
        check_run_config(resolved, manager, ("train",) if prepared and prepared.ready(resolved.data) else ())
    if out is None:
        stem = Path(config).stem if isinstance(config, (str, Path)) else "run"
        out = Path("runs") / stem
    if str(out).strip() == "":
        raise RunFolderError("--out: empty path (an unset shell variable?); name the run folder")
    folder = RunFolder(Path(out))
    task = build_task(resolved, manager)
    # under torchrun: one process of several, joined over the backend's torch.distributed backend
    with process_group(get_backend(resolved.backend, manager)) as group, \
            folder.lock() if group.is_main else contextlib.nullcontext():
        latest, meta, changes = _resume_point(folder, resolved, manager, group, restart, events)
        start = None  # the run fine-tuning starts from (seqkit.initialize)
        if latest is not None:
            task.load_state_dict(meta["task_state"])
        elif init is not None:
            start = read_init(init, resolved, manager)
            take_task_state(task, start, resolved)  # its tokenizers: no fit
        else:
            if group.is_main:
                fit(task, resolved.data, prepared, events)  # or the state fitted on the same data before
                check_task_state(task, manager)  # a state that cannot be saved fails now, not at step 1
            state = group.broadcast_json(task.state_dict() if group.is_main else None)
            if not group.is_main:  # one vocabulary for all ranks, whatever fit() would do on each
                task.load_state_dict(state)
        trainer = Trainer(resolved, folder, task, manager, events, group, prepared)
        if latest is not None:
            trainer.resume(latest)
        elif start is not None:
            ckpt.load_weights(trainer.model, start.tensors, start.path)
            events.message(f"initialised from {start.path}")
        if group.is_main:
            # repair what a crash between the writes of one step left (see seqkit.trainer)
            folder.remove_temporaries()
            if folder.repair_best(trainer.progress.best_step):
                events.message(f"{folder.best}: restored from step {trainer.progress.best_step}")
            folder.restore_metrics(trainer.progress.step, trainer.progress.history)
            folder.prune(resolved.train.keep_last, trainer.progress.best_step)
            if changes:  # config.toml says so with the first checkpoint trained under them
                events.message("changed since the last checkpoint, in force from step "
                               f"{trainer.progress.step}: {'; '.join(changes)}")
                trainer.config_notes = [f"from step {trainer.progress.step}: {c}" for c in changes]
            else:
                folder.write_config(resolved)
        try:
            summary = trainer.train()
        finally:
            # the DistributedDataParallel wrapper holds the process group: freed here, while the
            # group is still up, not when _train_resolved returns, where dropping the group's last
            # reference under the GIL can deadlock with a gloo thread (pytorch#56297; about 1
            # two-process run in 8 hung)
            del trainer
            gc.collect()
    result = RunResult(folder.root, summary)
    if test and group.is_main and "test" in task.splits():
        with events.timed("loading the best model"):
            model = load(folder.root, manager=manager)
        result.test, result.samples = model.evaluate("test", samples=samples, events=events)
    return result


def _display(progress: Any) -> Any:
    """The display ``progress`` asks for: None for none (False, None, or not rank 0 under
    torchrun), a ConsoleProgress on standard error for True, else the reporter given."""
    if progress is not None and not isinstance(progress, bool) and not is_reporter(progress):
        raise ConfigError(f"progress: must be True, False or an object with some of the methods "
                          f"{', '.join(EVENT_NAMES)}; got {type(progress).__name__}")
    if not progress or launched_rank() != 0:  # under torchrun rank 0 alone reports
        return None
    return ConsoleProgress() if progress is True else progress


def _reporters(events: Any, display: Any) -> Events:
    """One Events for the user's ``events`` and the display (silent on every rank but 0)."""
    if isinstance(events, bool):
        raise ConfigError("events: must be an Events or a reporter object, got a bool (progress=True "
                          "shows progress on the terminal)")
    if events is not None and not is_reporter(events):
        raise ConfigError(f"events: must be an Events or an object with some of the methods "
                          f"{', '.join(EVENT_NAMES)}; got {type(events).__name__}")
    if launched_rank() != 0:
        return Events()
    return Events.of(events, display)




@plugin_errors(lambda *args, **kwargs: kwargs.get("manager"))
def export(run: str | Path, to: str, folder: str | Path, *, check: int = 32, split: str | None = None,
           texts: list[str] | None = None, quantization: str | None = None,
           manager: PluginManager | None = None):
    """Export the run folder (or checkpoint) ``run`` to ``folder`` in format ``to`` ("hf": a Hugging
    Face MarianMT folder; "ctranslate2": a CTranslate2 model folder, its weights ``quantization``
    "float32" (the default), "int8" or "int8_float32"), verified: ``texts`` (else up to ``check``
    sources of ``split``, else of the run's test or valid split) are decoded greedily by seqkit and
    by the exported model, and any difference is an ExportError naming the input, with nothing
    written; quantized weights report the share decoded identically (``agreement``) and the BLEU
    difference instead. ``folder`` must be new or empty. A model the format cannot express is a
    ConfigError naming the option; a missing extra names the pip command. Returns a
    :class:`~seqkit.exporters.ExportResult`."""
    from seqkit.exporters import check_quantization, exporter
    from seqkit.exporters import export as export_model

    run, folder = path_argument(run, "run"), path_argument(folder, "folder")
    check = integer_argument(check, "check", minimum=1)
    if texts is not None:
        texts = list(texts_argument(texts, "texts"))
    exporter(to)  # an unknown format or a missing extra, before the model is loaded
    check_quantization(to, quantization)
    model = load(run, manager=manager_argument(manager))
    return export_model(model, to, folder, check, split, texts, quantization)


@plugin_errors(lambda *args, **kwargs: kwargs.get("manager"))
def import_hf(folder: str | Path, out: str | Path, *, check: int = 8, manager: PluginManager | None = None):
    """Make the run folder ``out`` from a local Hugging Face MarianMT folder (config.json,
    model.safetensors, source.spm/target.spm + vocab.json or a tokenizer.json; nothing is
    downloaded). ``check`` sample texts are tokenized and decoded by seqkit and by transformers
    first; a difference is an ExportError. ``seqkit.load(out)`` then generates, evaluates and
    scores, and ``train(..., init=out)`` fine-tunes. Returns an
    :class:`~seqkit.hf_import.ImportResult`."""
    from seqkit.exporters import require_extra

    folder, out = path_argument(folder, "folder"), path_argument(out, "out")
    check = integer_argument(check, "check")
    require_extra("hf")
    from seqkit.hf_import import import_marian

    return import_marian(folder, out, manager_argument(manager) or make_plugin_manager(), check)


def _resume_point(folder: RunFolder, config: RunConfig, manager: PluginManager, group, restart: bool,
                  events: Events) -> tuple[Path | None, dict[str, Any], list[str]]:
    """The checkpoint to resume from (None: start at step 0), its metadata, and the config keys
    that changed since it was written."""
    if restart and group.is_main:
        folder.clear()
    latest = folder.agreed_checkpoint(group, events.message)
    if latest is None:
        if group.is_main and folder.has_history():
            raise RunFolderError(f"{folder.root}: holds an earlier run but no readable checkpoint; "
                                 "use another --out, or --restart to start over (its files are removed)")
        return None, {}, []
    meta = ckpt.load_tensors(latest)[1]
    ckpt.check_meta(meta, latest, manager)
    resumable, other = config_changes(meta["config"], config)
    if other:
        shown = "; ".join(other[:4]) + ("; ..." if len(other) > 4 else "")
        raise RunFolderError(f"{folder.root}: was trained with another config ({shown}); use another "
                             "--out, or --restart to start over")
    return latest, meta, resumable


__all__ = ["Model", "RunResult", "build_task", "export", "import_hf", "load", "prepare", "resolve_config",
           "train"]
