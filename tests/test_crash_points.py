"""Deterministic crash testing, the SQLite way: every file operation of a run (each write, fsync,
rename, folder fsync, append and unlink of config, metrics, checkpoints and best) is a point where
the process may die or the operation may fail with a full disk or a permission error. At each point
the harness injects that failure, then runs the same command again, and requires the end state to
equal an uninterrupted run's bit for bit: weights, optimizer and RNG state, best.safetensors,
metrics.jsonl (timing fields aside) and the set of files. The run's prepared data (the fitted task
state in the cache of prepared data) are written through the same operations and crashed alike; each
run gets a cache of its own, so each sees the same operations. Random kill -9 tests (test_crash.py)
stay as a second line."""

from __future__ import annotations

import errno
import os

import pytest
from run_state import assert_same_end_state, end_state, tiny

import seqkit
from seqkit import storage
from seqkit.storage import StorageError

CONFIG = tiny(steps=8, log_every=4, keep_last=1)  # two evaluations, one pruned checkpoint


class SimulatedCrash(BaseException):
    """The process dies here: nothing after this point runs, no cleanup, no except Exception."""


def operations(run) -> list[tuple[str, str]]:
    """The file operations of an uninterrupted run, in order, as (operation, file name)."""
    seen = []
    storage.fault = lambda operation, path: seen.append((operation, path.name))
    try:
        seqkit.train(CONFIG, out=run, test=False)
    finally:
        storage.fault = None
    return seen


@pytest.fixture(scope="module")
def reference(tmp_path_factory, one_thread):
    run = tmp_path_factory.mktemp("straight")
    os.environ["SEQKIT_CACHE"] = str(run.parent / "straight-cache")  # the test's own sets it back
    ops = operations(run)
    return ops, end_state(run)


def own_cache(monkeypatch, run) -> None:
    """A cache of prepared data for ``run`` alone (beside it): its run sees every operation."""
    monkeypatch.setenv("SEQKIT_CACHE", str(run.parent / f"{run.name}-cache"))


def fail_at(index: int, failure: BaseException):
    count = {"n": -1}

    def fault(operation, path):
        count["n"] += 1
        if count["n"] == index:
            raise failure

    return fault


FAILURES = {
    "crash": lambda: SimulatedCrash(),
    "ENOSPC": lambda: OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
    "EACCES": lambda: OSError(errno.EACCES, os.strerror(errno.EACCES)),
}


@pytest.mark.parametrize("failure", list(FAILURES))
def test_every_file_operation_can_fail_and_the_rerun_ends_bit_for_bit_equal(tmp_path, reference, failure,
                                                                            monkeypatch):
    ops, expected = reference
    assert len(ops) >= 30 and {op for op, _ in ops} == {"write", "fsync", "rename", "fsync_dir", "append",
                                                         "unlink"}
    assert ("write", "task_state.json") in ops  # the prepared data's writes are among them
    for index, (operation, name) in enumerate(ops):
        run = tmp_path / f"{index}"
        own_cache(monkeypatch, run)
        storage.fault = fail_at(index, FAILURES[failure]())
        try:
            with pytest.raises((SimulatedCrash, StorageError)) as info:
                seqkit.train(CONFIG, out=run, test=False)
        finally:
            storage.fault = None
        if failure != "crash":  # one line naming the file that could not be written
            message = str(info.value)
            # a folder's fsync names the folder: one of the run's, or the prepared data's in the
            # cache ("reverse-<key>", the same name in every cache)
            in_cache = name.startswith("reverse-")
            named = str(run) if operation == "fsync_dir" and not in_cache else name
            reason = os.strerror(getattr(errno, failure))
            assert "\n" not in message and named in message and reason in message
        seqkit.train(CONFIG, out=run, test=False)
        try:
            assert_same_end_state(end_state(run), expected)
        except AssertionError as exc:
            raise AssertionError(f"{failure} at operation {index} ({operation} {name}): {exc}") from None


def test_a_crash_during_the_repair_of_a_crash_is_repaired_too(tmp_path, reference, monkeypatch):
    """Crash at each operation, then crash the rerun at its first file operation (removing a
    temporary, restoring best or metrics, rewriting config): the third run still ends equal."""
    ops, expected = reference
    repairs = set()
    for index in range(len(ops)):
        run = tmp_path / f"{index}"
        own_cache(monkeypatch, run)
        for fault in (fail_at(index, SimulatedCrash()), fail_at(0, SimulatedCrash())):
            seen = []

            def spy(operation, path, fault=fault, seen=seen):
                seen.append((operation, path.name))
                fault(operation, path)

            storage.fault = spy
            try:
                with pytest.raises(SimulatedCrash):
                    seqkit.train(CONFIG, out=run, test=False)
            finally:
                storage.fault = None
        repairs.add(seen[-1])
        seqkit.train(CONFIG, out=run, test=False)
        try:
            assert_same_end_state(end_state(run), expected)
        except AssertionError as exc:
            raise AssertionError(f"crash at operation {index}, then at {seen[-1]}: {exc}") from None
    # the second crashes hit repairs, not only a fresh start's first write
    kinds = {(op, name) for op, name in repairs if not name.endswith(".tmp")}
    assert {("write", "best.safetensors"), ("write", "metrics.jsonl"),
            ("unlink", "step-0000004.safetensors")} <= kinds, kinds  # each repair was crashed once
