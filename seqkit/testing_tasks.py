"""Conformance checks of a task plugin: what seqkit relies on when it trains, saves, loads and
evaluates with a task (see :class:`seqkit.Task`). Each check raises AssertionError with a message
in the author's terms ("task foo: decode(encode(x)).target != x.target for example 0 ...").

The task is built from its config class: with the options ``sample_options(folder)`` returns (small
files the task writes) when it has that classmethod, else with the config's defaults.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import random
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqkit.errors import SeqkitError
from seqkit.interfaces import DIRECTIONS, EncodedExample, Example, Task
from seqkit.plugins import Registration
from seqkit.testing import call_checked

EXAMPLES = 20  # examples per split the checks look at
SPLITS = ("train", "valid", "test")
TOKEN_KINDS = ("seq2seq", "language_model")


class _Built:
    """A task built for a check, with the options it was built from and its temporary folder."""

    def __init__(self, reg: Registration, folder: Path):
        self.reg, self.folder = reg, folder
        self.who = f"task {reg.name}"
        self.options = self._options()
        self.task = self.build(self.options)

    def _options(self) -> Any:
        config_class = self.reg.config_class
        factory = self.reg.factory
        task_class = factory if isinstance(factory, type) else type(
            self.call("the factory with default options", lambda: factory(_default(config_class))))
        sample = getattr(task_class, "sample_options", None)
        given = self.call("sample_options()", lambda: sample(self.folder)) if sample else {}
        if not isinstance(given, dict):
            raise AssertionError(f"{self.who}: sample_options() must return a dict of options, got "
                                 f"{type(given).__name__}")
        if config_class is None:
            assert not given, f"{self.who}: sample_options() returned options; the task has no config class"
            return None
        fields = {f.name for f in dataclasses.fields(config_class)}
        unknown = sorted(set(given) - fields)
        assert not unknown, (f"{self.who}: sample_options() returned {', '.join(unknown)}, which "
                             f"{config_class.__name__} has no field for")
        return self.call(f"{config_class.__name__}(**sample_options())", lambda: config_class(**given))

    def build(self, options: Any) -> Task:
        task = self.call("the factory", lambda: self.reg.factory(options))
        assert isinstance(task, Task), (f"{self.who}: the factory built a {type(task).__name__}, "
                                        "not a seqkit.Task")
        return task

    def call(self, what: str, run: Callable[[], Any]) -> Any:
        """``run()``; an exception becomes an AssertionError naming the task and ``what`` ran."""
        return call_checked(self.who, what, run)

    def examples(self, task: Task, split: str) -> list[Example]:
        return self.call(f"examples({split!r})",
                         lambda: list(itertools.islice(task.examples(split), EXAMPLES)))

    def fitted(self) -> Task:
        task = self.task
        assert "train" in self.call("splits()", task.splits), (
            f"{self.who}: splits() has no 'train'; give sample_options() a train file")
        self.call("fit(examples('train'))", lambda: task.fit(task.examples("train")))
        return task


def _default(config_class: type | None) -> Any:
    return config_class() if config_class is not None else None


@contextlib.contextmanager
def _built(reg: Registration) -> Iterator[_Built]:
    with tempfile.TemporaryDirectory(prefix="seqkit-task-check-") as folder:
        yield _Built(reg, Path(folder))


def _encoded(built: _Built, task: Task, example: Example, i: int) -> EncodedExample:
    encoded = built.call(f"encode() of example {i} ({example.where})", lambda: task.encode(example))
    assert isinstance(encoded, EncodedExample), (
        f"{built.who}: encode() returned a {type(encoded).__name__}, not a seqkit.EncodedExample")
    return encoded


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-4, abs_tol=1e-5)
        except (TypeError, ValueError):
            return False
    return a == b or str(a) == str(b)


# -- the checks ---------------------------------------------------------------------------------


def task_round_trip(reg: Registration) -> None:
    """decode(encode(x).target) gives x.target back, for training examples."""
    with _built(reg) as built:
        task = built.fitted()
        kind = task.model_kind
        for i, example in enumerate(built.examples(task, "train")):
            encoded = _encoded(built, task, example, i)
            assert encoded.target is not None, f"{built.who}: encode() of example {i} lost its target"
            target = encoded.target
            if kind in TOKEN_KINDS:
                assert target.dim() == 1 and target.numel() >= 2, (
                    f"{built.who}: a {kind} target must be (T,) ids framed [bos, ..., eos], got shape "
                    f"{tuple(target.shape)} for example {i}")
                target = target[1:-1]
            decoded = built.call(f"decode() of example {i}", lambda t=target: task.decode(t))
            assert _same(decoded, example.target), (
                f"{built.who}: decode(encode(x)).target != x.target for example {i} ({example.where}): "
                f"{example.target!r} vs {decoded!r}")


def task_state_round_trip(reg: Registration) -> None:
    """state_dict() is JSON, and a fresh task loaded from it encodes exactly as the fitted one."""
    from seqkit.contracts import check_task_state

    with _built(reg) as built:
        task = built.fitted()
        state = built.call("state_dict()", task.state_dict)
        try:
            check_task_state(task, reg)
        except SeqkitError as exc:
            raise AssertionError(f"{built.who}: {str(exc).partition(': ')[2] or exc}") from None
        fresh = built.build(built.options)
        built.call("load_state_dict() on a fresh task",
                   lambda: fresh.load_state_dict(json.loads(json.dumps(state))))
        for split in task.splits():
            for i, example in enumerate(built.examples(task, split)):
                a, b = _encoded(built, task, example, i), _encoded(built, fresh, example, i)
                for side in ("source", "target"):
                    x, y = getattr(a, side), getattr(b, side)
                    assert (x is None) == (y is None) and (x is None or torch.equal(x, y)), (
                        f"{built.who}: a task loaded from state_dict() encodes example {i} of {split} "
                        f"({example.where}) differently: {side} {_short(x)} vs {_short(y)}")


def task_encode_batch(reg: Registration) -> None:
    """A task with ``encode_batch`` gives the ids ``encode`` gives, example for example."""
    from seqkit.interfaces import EncodedBatch

    with _built(reg) as built:
        task = built.fitted()
        if type(task).encode_batch is Task.encode_batch:
            return  # optional: seqkit encodes one example at a time
        examples = built.examples(task, "train")
        batch = built.call("encode_batch(examples('train'))", lambda: task.encode_batch(examples))
        if batch is None:
            return
        assert isinstance(batch, EncodedBatch), (
            f"{built.who}: encode_batch() returned a {type(batch).__name__}, not a seqkit.EncodedBatch")
        for side in ("source", "target"):
            arrays = getattr(batch, side)
            rows = [None] * len(examples) if arrays is None else [r.tolist() for r in arrays.rows()]
            assert len(rows) == len(examples), (f"{built.who}: encode_batch() gave {len(rows)} {side}s "
                                                f"for {len(examples)} examples")
            for i, (example, row) in enumerate(zip(examples, rows, strict=True)):
                one = getattr(_encoded(built, task, example, i), side)
                expected = None if one is None else one.tolist()
                assert row == expected, (f"{built.who}: encode_batch() and encode() differ on the {side} "
                                         f"of example {i} ({example.where}): {_short(row)} vs "
                                         f"{_short(expected)}")


def task_model_shape(reg: Registration) -> None:
    """model_shape() is a ModelShape of the task's model_kind with the fields its kind needs."""
    from seqkit.model import task_model_shape as checked_shape

    with _built(reg) as built:
        task = built.fitted()
        try:
            checked_shape(task, built.who)
        except SeqkitError as exc:
            raise AssertionError(str(exc)) from None
        except Exception as exc:
            raise AssertionError(f"{built.who}: model_shape() raised {type(exc).__name__}: {exc}") from None


def task_metrics(reg: Registration) -> None:
    """metrics() gives finite numbers, each with a direction in metric_directions()."""
    from seqkit.evaluate import CORE_DIRECTIONS

    with _built(reg) as built:
        task = built.fitted()
        directions = built.call("metric_directions()", task.metric_directions)
        assert isinstance(directions, dict), (
            f"{built.who}: metric_directions() must return a dict, got {type(directions).__name__}")
        for name, direction in directions.items():
            assert direction in DIRECTIONS, (
                f"{built.who}: metric_directions()[{name!r}] is {direction!r}; expected 'higher' or 'lower'")
            assert CORE_DIRECTIONS.get(name, direction) == direction, (
                f"{built.who}: metric_directions() says {name!r} is {direction}-is-better; seqkit's own "
                f"{name!r} is {CORE_DIRECTIONS[name]}-is-better")
        references = [e.target for e in built.examples(task, "train")]
        metrics = built.call("metrics(references, references)", lambda: task.metrics(references, references))
        assert isinstance(metrics, dict), (f"{built.who}: metrics() must return a dict, got "
                                           f"{type(metrics).__name__}")
        for name, value in metrics.items():
            assert isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value), (
                f"{built.who}: metrics()[{name!r}] must be a finite number, got {value!r}")
            assert name in directions or name in CORE_DIRECTIONS, (
                f"{built.who}: metric {name!r} has no direction: add {name!r}: 'higher' or 'lower' to "
                "metric_directions()")


def task_data_option(reg: Registration) -> None:
    """``--data FILE`` (seqkit eval, score): the task built again with ``test`` = FILE and loaded
    from its state reads FILE's examples as they were read from the file before."""
    from seqkit.testing import Unsupported

    with _built(reg) as built:
        options = built.options
        fields = {f.name for f in dataclasses.fields(options)} if dataclasses.is_dataclass(options) else set()
        path = getattr(options, "train", None) if "test" in fields else None
        if not isinstance(path, Path):
            raise Unsupported("no file options (train, valid, test): --data does not apply")
        task = built.fitted()
        state = json.loads(json.dumps(built.call("state_dict()", task.state_dict)))
        expected = built.examples(task, "train")
        other = built.build(dataclasses.replace(options, test=path))
        built.call("load_state_dict()", lambda: other.load_state_dict(state))
        got = built.examples(other, "test")
        assert len(got) == len(expected), (
            f"{built.who}: with test = {path.name} (as --data sets it), examples('test') gave "
            f"{len(got)} examples; the same file read as train gave {len(expected)}")
        for i, (a, b) in enumerate(zip(expected, got, strict=True)):
            assert _same(a.source, b.source) and _same(a.target, b.target), (
                f"{built.who}: with test = {path.name} (as --data sets it), example {i} is "
                f"{(b.source, b.target)!r}; read as train it was {(a.source, a.target)!r}")
            _encoded(built, other, b, i)


def task_deterministic(reg: Registration) -> None:
    """Two tasks of the same options give the same examples and fit to the same state, whatever the
    global random state (the run's seed moves it; a task draws from its own seed)."""
    with _built(reg) as built:
        runs = []
        for seed in (1, 2):
            with _global_seed(seed):
                task = built.build(built.options)
                examples = {split: [(e.source, e.target) for e in built.examples(task, split)]
                            for split in built.call("splits()", task.splits)}
                built.call("fit(examples('train'))", lambda t=task: t.fit(t.examples("train")))
                state = built.call("state_dict()", task.state_dict)
                runs.append((examples, json.dumps(state, sort_keys=True)))
        (first, state1), (second, state2) = runs
        for split in first:
            for i, (a, b) in enumerate(zip(first[split], second.get(split, []), strict=False)):
                assert _same(a, b), (
                    f"{built.who}: example {i} of {split} differs between two tasks of the same options "
                    f"({a!r} vs {b!r}): draw data from the task's own seed option, not the global "
                    "random state")
        assert state1 == state2, (f"{built.who}: fit() on the same data gave different state_dict()s: "
                                  "a task must not use the global random state")


@contextlib.contextmanager
def _global_seed(seed: int) -> Iterator[None]:
    """The global torch, numpy and random generators seeded with ``seed``, restored afterwards."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def _short(value: Any) -> str:
    if value is None:
        return "None"
    text = str(value.tolist() if isinstance(value, torch.Tensor) else value)
    return text if len(text) <= 60 else text[:57] + "..."


TASK_CHECKS = [task_round_trip, task_state_round_trip, task_encode_batch, task_model_shape, task_metrics,
               task_data_option, task_deterministic]

__all__ = ["TASK_CHECKS", *(check.__name__ for check in TASK_CHECKS)]
