"""Machinery of tests/test_fuzz.py: invoking the CLI under a time and memory bound, the property
"success, or exit 2 with one line `seqkit: error: ...`", file hashes, safetensors rewriting and
outcome counts.

Each kind of violation is its own exception class raised from its own line, and a traceback that
escaped seqkit is re-raised as itself: hypothesis tells failures apart by exception type and the
line that raised it, so every distinct bug is reported (and shrunk) separately.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import math
import os
import resource
import signal
import struct
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from click.testing import CliRunner
from safetensors.torch import save as save_safetensors

from seqkit.checkpoint import CHECKSUM_KEY, content_crc32
from seqkit.cli import cli

HANG_SECONDS = float(os.environ.get("SEQKIT_FUZZ_HANG_SECONDS", 20))  # longer: a hang, it fails
MEMORY_HEADROOM = 3 << 30  # address space a case may add to what the test process already maps

# click reports a value it cannot parse itself (`--beam abc`, a RUN path that does not exist) as
# "Usage: ... / Error: ..." on several lines. The promise is one `seqkit: error:` line for every
# surface, so that format is counted as a violation (ClickUsageFormat); set this to True to accept it.
ACCEPT_CLICK_USAGE_ERRORS = os.environ.get("SEQKIT_FUZZ_ACCEPT_USAGE") == "1"

# SEQKIT_FUZZ_COLLECT=1 (for surveys, not for CI): count each violation with a sample instead of
# failing, so that one frequent failure does not hide the rest; the counts go to $SEQKIT_FUZZ_STATS.
COLLECT = os.environ.get("SEQKIT_FUZZ_COLLECT") == "1"
SAMPLES: dict[tuple[str, str], str] = {}

# (test name, outcome) -> count; printed at the end of the module, written as JSON to
# $SEQKIT_FUZZ_STATS when set
OUTCOMES: collections.Counter = collections.Counter()


# -- violations ----------------------------------------------------------------------------------


class Violation(AssertionError):
    """The property "success, or one line and exit 2" does not hold."""


class Hang(Violation):
    """A case ran past HANG_SECONDS."""


class TracebackPrinted(Violation):
    pass


class WrongExitStatus(Violation):
    pass


class ClickUsageFormat(Violation):
    """exit 2, but click's multi-line usage error instead of one `seqkit: error:` line."""


class NotOneErrorLine(Violation):
    pass


class ExtraStderrLines(Violation):
    pass


class EmptyErrorMessage(Violation):
    pass


class ErrorDoesNotSayWhere(Violation):
    pass


class ChangedFiles(Violation):
    pass


class WrongResult(Violation):
    """Exit 0, but the output is not what the command promises."""


class _Alarm(BaseException):
    """Raised by SIGALRM inside the case; a BaseException so that no `except Exception` eats it."""


# -- bounded invocation --------------------------------------------------------------------------


@contextlib.contextmanager
def time_limit(seconds: float, what: str) -> Iterator[None]:
    """Interrupt the block after ``seconds`` and fail it as a Hang (main thread only)."""

    def alarm(signum, frame):
        raise _Alarm()

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _Alarm as exc:
        stuck = _innermost_seqkit_frame(exc.__traceback__)
        raise Hang(f"{what}: still running after {seconds:.0f} s (interrupted in {stuck})") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _innermost_seqkit_frame(tb) -> str:
    frames = traceback.extract_tb(tb)
    ours = [f for f in frames if "seqkit" in f.filename and "tests" not in f.filename]
    frame = (ours or frames or [None])[-1]
    return f"{frame.filename}:{frame.lineno} {frame.name}" if frame else "?"


@contextlib.contextmanager
def memory_limit(headroom: int = MEMORY_HEADROOM) -> Iterator[None]:
    """Cap this process's address space at what it maps now plus ``headroom``, so that a config
    asking for 10**9 layers fails with an allocation error instead of taking the machine's memory
    from everyone; the old soft limit is restored after the block."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    mapped = _mapped_bytes()
    limit = mapped + headroom if mapped else resource.RLIM_INFINITY
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _mapped_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class Outcome:
    args: list[str]
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None
    exc_info: Any
    seconds: float

    @property
    def command(self) -> str:
        return "seqkit " + " ".join(_shell_word(a) for a in self.args)

    @property
    def error_line(self) -> str:
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else ""


def _shell_word(arg: str) -> str:
    shown = arg if len(arg) <= 80 else arg[:77] + "..."
    return shown if shown and all(c.isalnum() or c in "-_./=:," for c in shown) else repr(shown)


def invoke(args: list[str], input: str | bytes | None = None, timeout: float = HANG_SECONDS) -> Outcome:
    """``seqkit ARGS`` through click's CliRunner, interrupted (a Hang) after ``timeout`` seconds."""
    args = [str(a) for a in args]
    start = time.monotonic()
    try:
        with time_limit(timeout, "seqkit " + " ".join(args)[:200]):
            result = CliRunner().invoke(cli, args, input=input)
    except Hang as exc:  # check_outcome fails it (or counts it)
        return Outcome(args, -1, "", "", exc, (Hang, exc, exc.__traceback__), time.monotonic() - start)
    return Outcome(args, result.exit_code, result.stdout, result.stderr, result.exception,
                   result.exc_info, time.monotonic() - start)


# -- the property --------------------------------------------------------------------------------


def check_outcome(outcome: Outcome, test: str, *, stderr_may_have_progress: bool = False,
                  where: tuple[str, ...] = ()) -> bool:
    """Assert "exit 0, or exit 2 with exactly one stderr line `seqkit: error: ...` and no traceback";
    True when the command succeeded. ``stderr_may_have_progress``: lines before the error line are
    allowed (training progress). ``where``: when the command fails, its error line must contain one
    of these fragments (the name of the file that is wrong).

    An exception that escaped seqkit is re-raised as itself, with the command as a note."""
    exc = outcome.exception
    if exc is not None and not isinstance(exc, SystemExit):
        exc.add_note(f"fuzz case: {outcome.command}")
        return fail(test, exc.with_traceback(outcome.exc_info[2]))
    if "Traceback (most recent call last)" in outcome.stderr + outcome.stdout:
        return fail(test, TracebackPrinted(f"{outcome.command}: printed a traceback:\n"
                                           f"{outcome.stderr[-2000:]}"))
    if outcome.exit_code == 0:
        OUTCOMES[test, "ok"] += 1
        return True
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    if outcome.exit_code != 2:
        return fail(test, WrongExitStatus(f"{outcome.command}: exit status {outcome.exit_code}, "
                                          f"stderr {lines[-3:]}"))
    if any(line.startswith("Usage:") for line in lines) and any(line.startswith("Error:") for line in lines):
        if ACCEPT_CLICK_USAGE_ERRORS:
            OUTCOMES[test, "click usage error (accepted)"] += 1
            return False
        return fail(test, ClickUsageFormat(f"{outcome.command}: click's usage error, not one seqkit "
                                           f"line: {lines[-1]!r}"))
    errors = [line for line in lines if line.startswith("seqkit: error: ")]
    if len(errors) != 1:
        return fail(test, NotOneErrorLine(f"{outcome.command}: {len(errors)} `seqkit: error:` lines "
                                          f"in {lines[-5:]}"))
    if len(lines) != 1 and not stderr_may_have_progress or lines[-1] != errors[0]:
        return fail(test, ExtraStderrLines(f"{outcome.command}: stderr is not just the error line: "
                                           f"{lines[-5:]}"))
    if not errors[0].removeprefix("seqkit: error: ").strip():
        return fail(test, EmptyErrorMessage(f"{outcome.command}: the error line says nothing"))
    if where and not any(fragment in errors[0] for fragment in where):
        return fail(test, ErrorDoesNotSayWhere(f"{outcome.command}: {errors[0]!r} names none of "
                                               f"{list(where)}"))
    OUTCOMES[test, "error"] += 1
    return False


def fail(test: str, exc: BaseException) -> bool:
    """Raise ``exc`` (a violation, or an exception that escaped seqkit), or with COLLECT count it
    under its class and, for an escaped exception, where it was raised; False either way."""
    key = type(exc).__name__
    if not isinstance(exc, Violation) and exc.__traceback__ is not None:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        key = f"traceback {key} at {Path(frame.filename).name}:{frame.lineno}"
    OUTCOMES[test, key] += 1
    if not COLLECT:
        raise exc
    notes = "".join(f" | {note}" for note in getattr(exc, "__notes__", []))
    SAMPLES.setdefault((test, key), f"{exc}"[:600] + notes)
    return False

def record(test: str, outcome: str) -> None:
    OUTCOMES[test, outcome] += 1


def report_outcomes() -> str:
    tests = sorted({test for test, _ in OUTCOMES})
    lines = []
    for test in tests:
        counts = {o: n for (t, o), n in sorted(OUTCOMES.items()) if t == test}
        lines.append(f"{test}: {sum(counts.values())} cases: "
                     + ", ".join(f"{o} {n}" for o, n in counts.items()))
    stats = os.environ.get("SEQKIT_FUZZ_STATS")
    if stats:
        Path(stats).write_text(json.dumps({"counts": {f"{t} | {o}": n for (t, o), n in OUTCOMES.items()},
                                           "samples": {f"{t} | {o}": m for (t, o), m in SAMPLES.items()}},
                                          indent=1))
    return "\n".join(lines)


# -- files ---------------------------------------------------------------------------------------


def hash_tree(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under ``root`` (folders as "dir")."""
    root = Path(root)
    if not root.exists():
        return {}
    if root.is_file():
        return {root.name: hashlib.sha256(root.read_bytes()).hexdigest()}
    found = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        found[key] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def assert_unchanged(before: dict[str, str], root: Path, what: str, test: str,
                     ignore: tuple[str, ...] = ()) -> None:
    """Fail (ChangedFiles) unless ``root`` hashes as ``before``, except the paths in ``ignore``."""
    before = {k: v for k, v in before.items() if k not in ignore}
    after = {k: v for k, v in hash_tree(root).items() if k not in ignore}
    if after != before:
        changed = sorted(k for k in before.keys() & after.keys() if before[k] != after[k])
        fail(test, ChangedFiles(f"{what} changed {root}: added {sorted(after.keys() - before.keys())}, "
                                f"removed {sorted(before.keys() - after.keys())}, modified {changed}"))


# -- safetensors ---------------------------------------------------------------------------------


def read_header(data: bytes) -> tuple[dict[str, Any], bytes]:
    """The JSON header of safetensors bytes and the tensor bytes after it."""
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + length]), data[8 + length:]


def write_header(header: dict[str, Any], body: bytes) -> bytes:
    """Safetensors bytes from a (possibly edited) header and tensor bytes, padded as safetensors
    pads (to 8 bytes with spaces)."""
    # a mutation may put in a value JSON cannot hold (a TOML date): a file can only hold its text
    text = json.dumps(header, separators=(",", ":"), default=str).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + body


def checkpoint_bytes(tensors: dict[str, torch.Tensor], meta_text: str, checksum: bool = True) -> bytes:
    """A model file as seqkit writes one, from tensors and the text of its `seqkit` JSON document,
    with a checksum that matches (so a mutation reaches the checks behind the CRC)."""
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    metadata = {"seqkit": meta_text}
    if checksum:
        metadata[CHECKSUM_KEY] = content_crc32(tensors, meta_text)
    return save_safetensors(tensors, metadata=metadata)


def finite_json(value: Any) -> bool:
    """Whether ``value`` dumps as strict JSON (no NaN or infinity)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite_json(v) for v in value.values())
    if isinstance(value, list):
        return all(finite_json(v) for v in value)
    return True
