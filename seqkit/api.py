"""The Python API: ``seqkit.train`` runs a config, ``seqkit.load`` brings a trained model back.
The CLI's run, train, eval and generate go through these same functions."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from seqkit import checkpoint as ckpt
from seqkit.backends import get_backend
from seqkit.blame import exception_line
from seqkit.config import RunConfig, load_config
from seqkit.contracts import check_task_state
from seqkit.data import encode_split
from seqkit.distributed import launched_rank, process_group
from seqkit.errors import CheckpointError, ConfigError, PluginCodeError, SeqkitError
from seqkit.evaluate import evaluate
from seqkit.events import Events
from seqkit.generate import SearchConfig
from seqkit.inference import AttentionMap, Generation, attention_map, score_texts, search
from seqkit.interfaces import DTYPES, Task
from seqkit.model import SeqModel, build_model
from seqkit.plugins import PluginManager, make_plugin_manager
from seqkit.preflight import check_run_config
from seqkit.progress import ConsoleProgress, is_terminal
from seqkit.run_folder import RunFolder, RunFolderError, config_changes
from seqkit.trainer import Trainer

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


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


def resolve_config(config: str | Path | dict | RunConfig, overrides: list[str] | tuple[str, ...],
                   kwargs: dict[str, Any], manager: PluginManager) -> RunConfig:
    """A RunConfig from a path, a dict or a RunConfig, with ``--set`` strings and keyword overrides
    (``train__steps=100`` sets train.steps)."""
    if isinstance(config, RunConfig):
        if overrides or kwargs:
            raise ConfigError("overrides need a config file or dict, not a RunConfig")
        return config
    sets = [*overrides, *(f"{key.replace('__', '.')}={_toml_value(value)}" for key, value in kwargs.items())]
    return load_config(config, sets, manager=manager)


def _toml_value(value: Any) -> str:
    import tomli_w

    return tomli_w.dumps({"v": value}).partition("=")[2].strip()


@dataclass
class RunResult:
    folder: Path
    summary: dict[str, Any]
    test: dict[str, float] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)


def train(config: str | Path | dict | RunConfig, *, out: str | Path | None = None,
          overrides: list[str] | tuple[str, ...] = (), events: Events | None = None,
          progress: bool | Any | None = None, manager: PluginManager | None = None, test: bool = True,
          samples: int = 5, restart: bool = False, **kwargs: Any) -> RunResult:
    """Train (or resume, when ``out`` holds a checkpoint), then evaluate the best model on the test
    split and decode a few samples. ``out`` defaults to runs/<config file name>. Under torchrun
    every process calls this; they train together, and rank 0 alone writes the run folder and
    evaluates on the test split (the others return an empty ``test``).

    ``progress`` shows what the run does: None (the default) writes a
    :class:`~seqkit.progress.ConsoleProgress` to standard error when it is a terminal and nothing
    otherwise; True always, False never; or pass your own reporter (a ConsoleProgress on another
    stream, an :class:`~seqkit.events.Events`). ``events`` is an Events (or any object with some
    of the methods step, evaluated, message, started, phase) that gets every event as well: the
    header's :class:`~seqkit.events.RunInfo`, each step (step, total, loss, tokens/s, lr), each
    evaluation's metrics, and the start and duration of each long phase. Under torchrun only
    rank 0 reports.

    A run folder is written by one process at a time (a second gets a RunFolderError). Resuming
    with a changed model, task, data or seed is an error naming the keys; changed ``train.*`` keys
    (more steps, another learning rate) apply from the resumed step on and are noted in config.toml
    (a comment line each, above the config in force). A folder with an earlier run but no readable
    checkpoint is an error unless ``restart=True``, which removes that run's files and starts over."""
    events = _reporters(events, progress)
    manager = manager or make_plugin_manager()
    resolved = resolve_config(config, overrides, kwargs, manager)
    with events.timed("checking the config"):
        check_run_config(resolved, manager)  # what `seqkit config check` checks, before anything is written
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
        if latest is not None:
            task.load_state_dict(meta["task_state"])
        else:
            if group.is_main:
                with events.timed("task.fit on train (vocabularies, tokenizers)"):
                    task.fit(task.examples("train"))
                check_task_state(task, manager)  # a state that cannot be saved fails now, not at step 1
            state = group.broadcast_json(task.state_dict() if group.is_main else None)
            if not group.is_main:  # one vocabulary for all ranks, whatever fit() would do on each
                task.load_state_dict(state)
        trainer = Trainer(resolved, folder, task, manager, events, group)
        if latest is not None:
            trainer.resume(latest)
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
        summary = trainer.train()
    result = RunResult(folder.root, summary)
    if test and group.is_main and "test" in task.splits():
        with events.timed("loading the best model"):
            model = load(folder.root, manager=manager)
        result.test, result.samples = model.evaluate("test", samples=samples, events=events)
    return result


def _reporters(events: Any, progress: Any) -> Events:
    """One Events for the user's ``events`` and the ``progress`` display asked for (silent on
    every rank but 0)."""
    for name, value in (("events", events), ("progress", progress)):
        if value is not None and not isinstance(value, bool) and not _reports(value):
            raise ConfigError(f"{name}: must be an Events or an object with some of the methods "
                              f"{', '.join(EVENT_NAMES)}; got {type(value).__name__}")
    if isinstance(events, bool):
        raise ConfigError("events: must be an Events or a reporter object, got a bool (progress=True "
                          "shows progress on the terminal)")
    if launched_rank() != 0:  # under torchrun rank 0 alone reports
        return Events()
    if progress is None:
        progress = is_terminal(sys.stderr)
    if progress is True:
        progress = ConsoleProgress()
    return Events.of(events, progress or None)


EVENT_NAMES = ("step", "evaluated", "message", "started", "phase")


def _reports(value: Any) -> bool:
    return isinstance(value, Events) or any(callable(getattr(value, n, None)) for n in EVENT_NAMES)


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


class Model:
    """A trained model with its task: ``generate``, ``score``, ``attention``, ``evaluate``. Safe to
    call repeatedly from an application: inference mode, no global state changed (sampling uses
    its own random generator), nothing printed."""

    def __init__(self, model: SeqModel, task: Task, config: RunConfig, path: Path, meta: dict[str, Any],
                 manager: PluginManager, precision: str = "fp32"):
        self.model, self.task, self.config, self.path, self.meta = model, task, config, path, meta
        self.manager, self.precision = manager, precision

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def generate(self, texts: list[str] | str, *, beam: int = 1, nbest: int = 1, sample: bool = False,
                 temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, seed: int | None = None,
                 max_len: int | None = None, min_len: int = 0, length_penalty: float = 0.0,
                 no_repeat_ngram: int = 0, scores: bool = False, batch_size: int = 64) -> list:
        """Outputs for source texts (a language model: continuations of prompts, prompt included).

        One string per text; with ``scores=True`` a :class:`~seqkit.inference.Generation` (text,
        total log-probability, token ids) instead; with ``nbest > 1`` a list of ``nbest`` of those
        per text, best first. ``max_len`` defaults to the config's ``data.max_target_len``. An
        empty source gives an empty output. A classifier or regressor returns its predictions.

        ``texts`` is a list (or tuple) of strings, and a list comes back; one ``str`` is one text,
        and its result alone comes back (``generate("seven") == "sept"``). Anything else is a
        :class:`~seqkit.errors.ConfigError`."""
        max_len = self.config.data.max_target_len if max_len is None else max_len
        options = SearchConfig(max_len=max_len, min_len=min_len, beam=beam,
                               nbest=nbest, length_penalty=length_penalty, no_repeat_ngram=no_repeat_ngram,
                               sample=sample, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
        single = isinstance(texts, str)
        with self.autocast():
            found = search(self.model, self.task, self.config, texts, options, batch_size)
        rows = [found] if single else found
        shown = [[g if scores else g.text for g in row] for row in rows]
        shown = shown if nbest > 1 else [row[0] for row in shown]
        return shown[0] if single else shown

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

    def attention(self, text: str, **search_options: Any) -> tuple[Generation, AttentionMap]:
        """The output for one source string and where each output token attended in the source
        (a list of texts is a :class:`~seqkit.errors.ConfigError`: one map is for one source)."""
        options = SearchConfig(**{"max_len": self.config.data.max_target_len, **search_options})
        with self.autocast():
            return attention_map(self.model, self.task, self.config, text, options)

    def autocast(self):
        """The precision context generation runs in (fp32: none)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=DTYPES[self.precision])

    def use_data(self, split: str, path: Path) -> None:
        """Read ``split`` from ``path`` (a file in the task's format) from now on."""
        options = self.config.task.options
        names = {f.name for f in dataclasses.fields(options)} if dataclasses.is_dataclass(options) else set()
        if split not in names:
            raise ConfigError(f"task {self.config.task.name!r} has no file option {split!r} to replace")
        self.config.task.options = dataclasses.replace(options, **{split: Path(path)})
        state = self.task.state_dict()
        self.task = build_task(self.config, self.manager)
        self.task.load_state_dict(state)

    def evaluate(self, split: str = "test", samples: int = 0,
                 events: Events | None = None) -> tuple[dict[str, float], list[dict]]:
        """Metrics on a split of the task's data, and the first ``samples`` predictions.
        ``events`` hears of its two phases (encoding the split, evaluating and decoding it)."""
        events = Events.of(events)
        with events.timed(f"encoding {split}"):
            encoded = encode_split(self.task, split, self.config.data)
        with events.timed(f"evaluating on {split} (loss, decoding {len(encoded):,} examples)"):
            metrics, predictions = evaluate(self.model, self.task, encoded, device=self.device,
                                            batch_tokens=self.config.data.batch_tokens,
                                            max_len=self.config.data.max_target_len)
        metrics = {**metrics, "examples": len(encoded), **{k: v for k, v in encoded.stats.items()
                                                          if k in ("dropped", "truncated") and v}}
        shown = [{"source": encoded.examples[i].source, "reference": encoded.examples[i].target,
                  "prediction": p} for i, p in enumerate(predictions[:samples])]
        return metrics, shown


def load(run_or_checkpoint: str | Path, *, manager: PluginManager | None = None,
         device: str | torch.device = "cpu", precision: str = "fp32") -> Model:
    """A trained model from a run folder (its best checkpoint) or a checkpoint file, on ``device``,
    generating in ``precision`` (fp32, bf16 or fp16 autocast)."""
    if precision not in DTYPES:
        raise ConfigError(f"precision: must be one of {', '.join(DTYPES)}, got {precision!r}")
    path = Path(run_or_checkpoint)
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
        model = build_model(config.model, task.model_shape(), manager)
    except (CheckpointError, PluginCodeError):
        raise
    except (SeqkitError, KeyError, IndexError, AttributeError, TypeError, ValueError, RuntimeError,
            tomllib.TOMLDecodeError, MemoryError, RecursionError, OverflowError) as exc:
        detail = (str(exc).splitlines() or [""])[0] or type(exc).__name__
        if isinstance(exc, KeyError):
            detail = f"missing {detail}"
        raise CheckpointError(f"{path}: damaged checkpoint: its {part} is wrong: {detail}") from None
    ckpt.load_weights(model, tensors, path)
    return Model(model.to(device).eval(), task, config, path, meta, manager, precision)


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
