"""Ctrl-C and SIGTERM during training, held until a step is complete.

A signal that arrives inside a training step (forward, backward, the optimizer update, a
checkpoint write) is remembered, and the trainer acts on it at the next step boundary: it saves
what the last completed step left and raises ``Interrupted``. So the saved data position, RNG state
and weights are always those of a whole step, and the resumed run is the run that never stopped.
During an evaluation, which changes no training state, a signal interrupts at once. A second
signal while one is pending interrupts at once too, without saving: the last checkpoint is kept.

Handlers can only be installed from the main thread; elsewhere (and for distributed runs, whose
processes would stop at different steps) signals keep their default behaviour.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Training stopped on a signal; ``saved`` is the checkpoint written for it (None if none)."""

    def __init__(self, signum: int, saved=None):
        super().__init__(signal.Signals(signum).name)
        self.signum, self.saved = signum, saved


class DeferredSignals:
    """``with DeferredSignals() as signals``: ``signals.pending`` is the signal number held since the
    last ``take()``; inside ``signals.at_once()`` a signal raises ``Interrupted`` right away."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.pending: int | None = None
        self._immediate = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> DeferredSignals:
        if self.enabled:
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if self._immediate or self.pending is not None:
            raise Interrupted(signum)
        self.pending = signum

    @contextlib.contextmanager
    def at_once(self) -> Iterator[None]:
        """A region where a signal interrupts immediately (one already pending does too)."""
        if self.pending is not None:
            raise Interrupted(self.pending)
        self._immediate = True
        try:
            yield
        finally:
            self._immediate = False
