"""What a run tells a user interface while it trains: ``Events``, a set of callbacks.

Library code never prints; it calls these. ``seqkit.progress.ConsoleProgress`` turns them into
terminal output, a test or a notebook can pass its own. A run calls, in order:

    phase("checking the config", "started", None)                             long silent work
    phase("checking the config", "finished", 1.2)    (or "failed": an exception follows)
    started(RunInfo)                                                          once, before step 1
    step(step, total, loss, tokens_per_s, lr)                                 every step
    phase("evaluating on valid", ...) ... evaluated(step, metrics)            every eval_every
    message(text)                                                             anything else

A callback that takes fewer positional arguments than ``step`` offers gets the first ones: the
four-argument ``step(step, total, loss, tokens_per_s)`` of earlier versions keeps working.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunInfo:
    """What a run is about to do, for a start-up header. ``data`` maps a split to its counts
    (``examples``: kept after the length limits, ``tokens``: source plus target tokens, when the
    task has tokens); ``resumed_from`` is the checkpoint a resumed run continues (None: step 0)."""

    backend: str
    device: str
    precision: str
    parameters: int
    folder: Path
    steps: int
    start_step: int = 0
    data: dict[str, dict[str, int]] = field(default_factory=dict)
    source_vocab: int | None = None
    target_vocab: int | None = None
    model_kind: str = ""
    world_size: int = 1
    resumed_from: Path | None = None


def _ignore(*args: Any) -> None:
    return None


@dataclass
class Events:
    """Callbacks for a user interface; library code never prints.

    ``step`` gets (step, total, loss, tokens per second, learning rate) -- or only the first four
    when it takes four; ``evaluated`` gets (step, metrics); ``message`` a line of text;
    ``started`` a :class:`RunInfo` before the first step; ``phase`` (name, "started", None) when
    a long silent phase starts and (name, "finished" or "failed", seconds) when it ends."""

    step: Callable[..., None] = _ignore
    evaluated: Callable[[int, dict[str, float]], None] = _ignore
    message: Callable[[str], None] = _ignore
    started: Callable[[RunInfo], None] = _ignore
    phase: Callable[[str, str, float | None], None] = _ignore

    def __post_init__(self) -> None:
        self._step_arguments = _positional_capacity(self.step)

    def report_step(self, step: int, total: int, loss: float, tokens_per_s: float, lr: float) -> None:
        """Call ``step`` with as many of its arguments as it takes."""
        self.step(*(step, total, loss, tokens_per_s, lr)[: self._step_arguments])

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """``phase(name, "started", None)`` now and ``phase(name, "finished", seconds)`` when the
        block ends, or ``phase(name, "failed", seconds)`` when it raises."""
        self.phase(name, "started", None)
        started = time.perf_counter()
        try:
            yield
        except BaseException:
            self.phase(name, "failed", time.perf_counter() - started)
            raise
        self.phase(name, "finished", time.perf_counter() - started)

    @classmethod
    def of(cls, *reporters: Any) -> Events:
        """One Events calling every reporter given (an Events or any object with some of the
        methods step, evaluated, message, started, phase); None entries are skipped."""
        found = [r for r in reporters if r is not None]
        if len(found) == 1 and isinstance(found[0], Events):
            return found[0]
        callbacks = {}
        for name in EVENT_NAMES:
            chosen = [_callback(r, name) for r in found]
            chosen = [c for c in chosen if c is not None]
            if chosen:
                callbacks[name] = chosen[0] if len(chosen) == 1 else _Both(chosen)
        return cls(**callbacks)


EVENT_NAMES = ("step", "evaluated", "message", "started", "phase")


def is_reporter(value: Any) -> bool:
    """Whether ``value`` can be given to :meth:`Events.of`: an Events, or an object with some of
    the methods named in ``EVENT_NAMES``."""
    return isinstance(value, Events) or any(callable(getattr(value, n, None)) for n in EVENT_NAMES)


def _callback(reporter: Any, name: str) -> Callable[..., None] | None:
    if isinstance(reporter, Events):
        if name == "step":  # keep its own argument count
            return reporter.report_step if reporter.step is not _ignore else None
        value = getattr(reporter, name)
        return None if value is _ignore else value
    value = getattr(reporter, name, None)
    return value if callable(value) else None


class _Both:
    """Calls each callback with as many of the arguments as it takes."""

    def __init__(self, callbacks: list[Callable[..., None]]):
        self.callbacks = [(c, _positional_capacity(c)) for c in callbacks]

    def __call__(self, *args: Any) -> None:
        for callback, capacity in self.callbacks:
            callback(*args[:capacity])


def _positional_capacity(fn: Callable[..., Any]) -> int:
    """How many positional arguments ``fn`` takes (a large number for ``*args``, or when its
    signature cannot be read)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1_000
    count = 0
    for p in parameters:
        if p.kind is p.VAR_POSITIONAL:
            return 1_000
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


__all__ = ["Events", "RunInfo"]
