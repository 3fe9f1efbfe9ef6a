"""examples/gpu_check.sh, the one command a machine with a GPU runs: its --dry mode runs every step
at tiny sizes on the CPU and writes the same files (so the script cannot rot between GPU sessions),
and a failing or timed-out step is recorded while the steps after it still run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "examples" / "gpu_check.sh"
FILES = {"summary.md", "gpu_check.log", "train.json", "encode.json", "encode.png", "generate.json"}

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="needs bash and coreutils' timeout")


def gpu_check(*args: str, python: str = sys.executable, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": python, **env})


def steps_of(summary: str) -> dict[str, str]:
    """step name -> result, from the summary's step table."""
    return dict(re.findall(r"^\| (setup|cuda-tests|train|encode|generate|train-compiled) \| (.*?) \| \d+ \|$",
                           summary, re.M))


def test_dry_mode_runs_every_step_on_the_cpu_and_writes_the_results(tmp_path):
    out = tmp_path / "out"
    result = gpu_check("--dry", str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    found = {p.name for p in out.iterdir()}
    assert found == FILES, found
    assert len(found) <= 8 and all(p.is_file() for p in out.iterdir())  # what the device tool brings back

    rows = {name: json.loads((out / f"{name}.json").read_text())["rows"]
            for name in ("train", "encode", "generate")}
    assert {(r["implementation"], r["length"]) for r in rows["train"]} == {
        (impl, n) for impl in ("seqkit", "raw") for n in (8, 16)}
    assert {(r["architecture"], r["length"]) for r in rows["encode"]} == {
        (arch, n) for arch in ("transformer", "lstm") for n in (8, 16, 32, 64)}
    assert {(r["architecture"], r["implementation"], r["batch_size"]) for r in rows["generate"]} == {
        (arch, impl, size) for arch in ("transformer", "lstm") for impl in ("seqkit", "recompute", "beam4")
        for size in (1, 2)}
    for name, table in rows.items():
        assert all(r["status"] == "ok" and r["tokens_per_s"] > 0 for r in table), name
    meta = json.loads((out / "train.json").read_text())["meta"]
    assert meta["backend"] == "cpu" and meta["precision"] == "fp32"
    assert (out / "encode.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    summary = (out / "summary.md").read_text()
    steps = steps_of(summary)
    assert list(steps) == ["setup", "cuda-tests", "train", "encode", "generate", "train-compiled"], summary
    collected = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "tests/test_cuda.py"],
                               cwd=ROOT, capture_output=True, text=True).stdout
    cuda_tests = len([line for line in collected.splitlines() if "::test_" in line])
    assert steps["cuda-tests"].startswith(f"ok: {cuda_tests} skipped (needs a CUDA GPU"), steps
    assert steps["train"] == "ok: 4 rows in train.json"
    assert steps["generate"] == "ok: 12 rows in generate.json"
    assert steps["train-compiled"].startswith("skipped: not in --dry")
    assert "## Training, eager: seqkit against raw nn.Transformer (d_model 16" in summary
    assert re.search(r"^\| transformer \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \|$", summary, re.M), summary
    assert "## Generation, 8 new tokens" in summary
    assert "![encode latency against length](encode.png)" in summary
    log = (out / "gpu_check.log").read_text()
    for step in ("cuda-tests", "train", "encode", "generate"):  # a timestamp when each starts and ends
        assert re.search(rf"^\[\d\d:\d\d:\d\d \+\d+s\] {step}: start", log, re.M), step
        assert re.search(rf"^\[\d\d:\d\d:\d\d \+\d+s\] {step}: end, exit status 0", log, re.M), step


def test_a_failing_or_hanging_step_is_recorded_and_the_next_steps_run(tmp_path):
    """encode hangs past its limit, generate fails with an error line: both are in the summary,
    each with why, and the script exits 1 after running both."""
    python = tmp_path / "python"
    python.write_text(f"""#!/usr/bin/env bash
case " $* " in
    *" --mode encode "*) exec sleep 60 ;;
    *" --mode generate "*) echo "seqkit: error: --lengths: an injected failure" >&2; exit 2 ;;
esac
exec {sys.executable} "$@"
""")
    python.chmod(0o755)
    out = tmp_path / "out"
    result = gpu_check("--dry", "--only", "encode,generate", str(out), python=str(python),
                       GPU_CHECK_STEP_TIMEOUT_S="3")
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    steps = steps_of((out / "summary.md").read_text())
    assert steps == {"setup": f"ok: seqkit from {ROOT}", "encode": "timed out after 3s",
                     "generate": "exit status 2: seqkit: error: --lengths: an injected failure"}, steps
    assert "generate: end, exit status 2" in (out / "gpu_check.log").read_text()


def test_steps_past_the_budget_are_not_started(tmp_path):
    result = gpu_check("--dry", "--only", "train", str(tmp_path / "out"), GPU_CHECK_BUDGET_S="1")
    assert result.returncode == 1
    steps = steps_of((tmp_path / "out" / "summary.md").read_text())
    assert re.fullmatch(r"out of time: 0s left of the 1s budget", steps["train"]), steps


@pytest.mark.parametrize(("args", "message"), [
    ((), "usage: bash examples/gpu_check.sh"),
    (("--only", "nope", "out"), "--only: unknown step 'nope'"),
    (("--fast", "out"), "unknown option --fast"),
    (("a", "b"), "one OUT folder, got 'a' and 'b'"),
])
def test_bad_arguments_are_one_line_and_exit_2(tmp_path, args, message):
    result = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, cwd=tmp_path,
                            timeout=30)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()
