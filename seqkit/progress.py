"""Training progress for people: ``ConsoleProgress`` writes a run's events to a stream (stderr).

On a terminal, one line is rewritten in place::

    [#########.....................] 180/600  loss 2.1503  lr 0.00149  5.1 steps/s  3,410 tok/s
      elapsed 0:41  ETA 1:22            (one line)

with lines above it for what happened (a phase's duration, an evaluation). In a pipe or a CI log
the same fields come as plain lines, every ``interval`` seconds and at the last step. Before the
first step comes a header (model kind, parameters, device, precision, data and vocabulary sizes,
run folder, resume point), and each long silent phase (checking the config, fitting the task,
encoding data, evaluation, test decoding) is shown as it starts and with its duration as it ends.

In a pipe, the lines of the phases before the header come with it, so that a run refused at
start-up writes nothing but its error. The ETA divides the steps left by the rate of the last
``window`` seconds of training, not counting time spent in phases (evaluation) or before the
first step (start-up, compilation).

``seqkit.train(..., progress=True)`` uses it; so does ``seqkit run``. It never writes to stdout.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections import deque
from typing import TextIO

from seqkit.events import RunInfo

CLEAR_LINE = "\r\033[K"


class ConsoleProgress:
    """A run's progress on ``stream`` (default: standard error): a line rewritten in place on a
    terminal, plain lines every ``interval`` seconds elsewhere. ``tty`` overrides what
    ``stream.isatty()`` says; ``columns`` the terminal's width. With ``hold_startup`` (not a
    terminal) the lines of phases before the header wait for it: pass False when there is no
    header to wait for (``Model.evaluate(events=ConsoleProgress(hold_startup=False))``).
    Pass it as ``seqkit.train(config, progress=ConsoleProgress())``."""

    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None, interval: float = 10.0,
                 refresh: float = 0.1, window: float = 30.0, hold_startup: bool = True,
                 columns: int | None = None, clock=time.monotonic):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = is_terminal(self.stream) if tty is None else tty
        self.interval = interval  # seconds between plain lines (not a terminal)
        self.refresh = refresh  # seconds between redraws of the terminal line
        self.window = window
        self.columns = columns  # of the terminal (None: asked each time, it may be resized)
        self.bar_width = 30
        self.clock = clock
        self.began: float | None = None  # first event: what "elapsed" counts from
        self.paused = 0.0  # seconds spent in phases, left out of the step rate
        self.phase_started: dict[str, float] = {}
        self.recent: deque[tuple[float, int]] = deque()  # (training clock, step)
        self.last_written = -float("inf")
        self.open_line = ""  # the terminal line being rewritten (bar and running phase)
        self.bar = ""  # the bar, while training is under way
        self.status = ""  # the phase running, shown after the bar
        # not a terminal: lines of the phases before the header wait for it, so that a run refused
        # at start-up (a bad config, a missing file) leaves its error as the only line
        self.held: list[str] | None = [] if hold_startup and not self.tty else None

    # -- events ----------------------------------------------------------------------------------

    def started(self, info: RunInfo) -> None:
        self._begin()
        held, self.held = self.held or [], None
        for line in [*held, *header(info)]:
            self._line(line)

    def phase(self, name: str, state: str, seconds: float | None = None) -> None:
        """``state``: "started", "finished" (after ``seconds``) or "failed" (an error follows,
        said by whoever catches it)."""
        self._begin()
        if state == "started":
            self.phase_started[name] = self.clock()
            self.status = f"{name} ..."
            if self.tty:
                self._redraw()
            elif self.held is None:
                self._line(self.status)
            return
        started = self.phase_started.pop(name, None)
        if started is not None:
            self.paused += self.clock() - started
        self.status = ""
        if state != "finished":
            if self.tty:
                self._redraw()  # the running phase's line goes; the error takes its place
            return
        line = f"{name}: {format_seconds(seconds or 0.0)}"
        if self.held is not None:
            self.held.append(line)
        else:
            self._line(line)

    def step(self, step: int, total: int, loss: float, tokens_per_s: float, lr: float | None = None) -> None:
        self._begin()
        now = self.clock()
        self.recent.append((now - self.paused, step))
        while len(self.recent) > 2 and self.recent[-1][0] - self.recent[0][0] > self.window:
            self.recent.popleft()
        last = step >= total
        if not last and now - self.last_written < (self.refresh if self.tty else self.interval):
            return
        self.last_written = now
        parts = self.fields(step, total, loss, tokens_per_s, lr, now)
        if not self.tty:
            self._write(f"step {'  '.join(parts)}\n")
            return
        self.bar = self._bar(step, total, parts)
        if last:  # the bar stays as it ends; what follows (evaluation, test) goes below it
            final, self.bar = self.bar, ""
            self._line(final)
        else:
            self._redraw()

    def evaluated(self, step: int, metrics: dict[str, float]) -> None:
        shown = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in metrics.items() if isinstance(v, (int, float)))
        self._line(f"eval @ {step}: {shown}")

    def message(self, text: str) -> None:
        self._line(text)

    # -- what a line says ------------------------------------------------------------------------

    def steps_per_second(self) -> float | None:
        """Steps per second over the recent window of training time (None before two steps)."""
        if len(self.recent) < 2:
            return None
        (t0, s0), (t1, s1) = self.recent[0], self.recent[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 else None

    def fields(self, step: int, total: int, loss: float, tokens_per_s: float, lr: float | None,
               now: float) -> list[str]:
        rate = self.steps_per_second()
        parts = [f"{step}/{total}", f"loss {loss:.4f}"]
        if lr is not None:
            parts.append(f"lr {lr:.3g}")
        parts += [f"{rate:.3g} steps/s" if rate else "- steps/s", f"{tokens_per_s:,.0f} tok/s",
                  f"elapsed {format_clock(now - (self.began or now))}"]
        eta = (total - step) / rate if rate and step < total else (0.0 if step >= total else None)
        parts.append(f"ETA {format_clock(eta) if eta is not None else '-'}")
        return parts

    def _bar(self, step: int, total: int, parts: list[str]) -> str:
        """The terminal line: a bar as wide as the room left (none below 10 characters); on a
        narrow terminal the fields go in this order until the rest fits: lr, tok/s, steps/s,
        elapsed (step, loss and ETA stay)."""
        room = self._columns() - 1
        for dropped in ("lr ", " tok/s", " steps/s", "elapsed "):
            if len("  ".join(parts)) <= room - 13:  # room for a bar of 10
                break
            parts = [p for p in parts if dropped not in p]
        text = "  ".join(parts)
        width = min(self.bar_width, room - len(text) - 3)
        if width < 10:
            return text
        self.bar_width = width  # it only narrows: a bar that changes width each refresh jitters
        filled = width * min(step, total) // max(total, 1)
        return f"[{'#' * filled}{'.' * (width - filled)}] {text}"

    def close(self) -> None:
        """End the line being rewritten, so that what follows (an error, the interrupt message,
        the results) starts on a line of its own; seqkit.train calls it however the run ends."""
        if self.tty and self.open_line:
            self._write("\n")
        self.open_line = self.bar = self.status = ""

    # -- writing ---------------------------------------------------------------------------------

    def _begin(self) -> None:
        if self.began is None:
            self.began = self.clock()

    def _line(self, text: str) -> None:
        """A line that stays; on a terminal it goes above the line being rewritten."""
        if self.tty and self.open_line:
            self._write(CLEAR_LINE + text + "\n")
            self.open_line = ""
            self._redraw()
        else:
            self._write(text + "\n")

    def _redraw(self) -> None:
        line = "  ".join(part for part in (self.bar, self.status) if part)
        line = line[: max(self._columns() - 1, 20)]  # a line that wraps can no longer be rewritten
        if line or self.open_line:
            self._write(CLEAR_LINE + line)
        self.open_line = line

    def _columns(self) -> int:
        if self.columns is not None:
            return self.columns
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, ValueError, OSError):  # no file descriptor (a test's stream)
            columns = 0
        return columns or shutil.get_terminal_size().columns  # 0: a terminal that does not say

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def header(info: RunInfo) -> list[str]:
    """The start-up lines for a run."""
    sides = (("source", info.source_vocab), ("target", info.target_vocab))
    vocab = [f"{side} {size:,}" for side, size in sides if size is not None]
    processes = f" x {info.world_size} processes" if info.world_size > 1 else ""
    lines = [f"training a {info.model_kind or 'model'} model of {info.parameters:,} parameters",
             f"  backend {info.backend}, device {info.device}{processes}, precision {info.precision}"]
    data = ", ".join(f"{split} {counts.get('examples', 0):,} examples"
                     + (f" ({counts['tokens']:,} tokens)" if counts.get("tokens") else "")
                     for split, counts in info.data.items())
    if data:
        lines.append(f"  data: {data}")
    if vocab:
        lines.append(f"  vocabulary: {', '.join(vocab)}")
    lines.append(f"  run folder: {info.folder}")
    if info.resumed_from is not None:
        lines.append(f"  resuming from {info.resumed_from} at step {info.start_step} of {info.steps}")
    else:
        lines.append(f"  steps: {info.steps}")
    return lines


def format_seconds(seconds: float) -> str:
    """``0.42 s``, ``12.3 s``, ``2:05`` (m:ss) or ``1:02:05``."""
    if seconds < 1:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return format_clock(seconds)


def format_clock(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``."""
    whole = int(round(max(seconds, 0.0)))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def is_terminal(stream) -> bool:
    """Whether ``stream`` is a terminal (False for a stream without isatty, or a closed one)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


__all__ = ["ConsoleProgress", "format_clock", "format_seconds", "header", "is_terminal"]
