#!/usr/bin/env bash
# seqkit on one CUDA GPU (an H100 or H200), in one command that a machine with a GPU runs unchanged:
#
#   bash examples/gpu_check.sh OUT          about 3-6 minutes; every step stops by 8 minutes in all
#   bash examples/gpu_check.sh --dry OUT    the same steps at tiny sizes on the CPU (CI runs it)
#
# Steps, each independent (a failing step is recorded in OUT/summary.md with its error, and the
# script goes on to the next; it exits 1 at the end if any step failed):
#   setup         find python3 with torch, make `import seqkit` this checkout (installs it offline,
#                 with pip's --no-index, when it is not installed; missing dependencies come from
#                 wheels in .whl/ or $SEQKIT_WHEELS), record the GPU, torch and CUDA versions
#   cuda-tests    python -m pytest -m cuda tests/test_cuda.py (bf16 autocast, fp16 with the grad
#                 scaler, fused AdamW, torch.compile, generation on the device, nccl world size 1)
#   train         seqkit bench --baseline raw --mode train at the transformer-base shape (d_model 512,
#                 8 heads, ffn 2048, 6+6 layers, 32k vocabulary), bf16, 16,384 target tokens per
#                 step, L = 256 and 1024                                      -> OUT/train.json
#   encode        encode latency at batch 1, L = 64 ... 4096, transformer against lstm
#                                                                -> OUT/encode.json, OUT/encode.png
#   generate      seqkit bench --mode generate, 128 new tokens at batch 1 and 32 -> OUT/generate.json
#   train-compiled  the train step at L=256 with --compile, only when 150 s are left (not in --dry);
#                 optional: its failure is shown but does not fail the check -> OUT/train-compiled.json
# OUT/gpu_check.log holds every step's output with a timestamp per step; OUT/summary.md (rewritten
# after every step, so a run cut short still has one) holds the tables to paste into the README.
# At most 8 files are written to OUT: what the device tool brings back from a machine.
#
# Options: --only STEP[,STEP...] runs those steps (setup always runs). Environment:
#   PYTHON                 the interpreter (default python3)
#   GPU_CHECK_BUDGET_S     the whole run's limit in seconds (default 480; --dry 300): each step
#                          gets at most what is left, a step with under 20 s left is not started
#   GPU_CHECK_STEP_TIMEOUT_S  every step's own limit (default: per step, below)
#   SEQKIT_WHEELS          a folder of wheels for missing dependencies (default .whl)
set -u -o pipefail

usage() {
    echo "usage: bash examples/gpu_check.sh [--dry] [--only STEP[,STEP...]] OUT" >&2
    echo "steps: cuda-tests, train, encode, generate, train-compiled (setup always runs)" >&2
    exit 2
}

STEPS="cuda-tests train encode generate train-compiled"
DRY=0
ONLY=""
OUT=""
while (($#)); do
    case "$1" in
        --dry) DRY=1 ;;
        --only) [[ $# -ge 2 ]] || usage; ONLY="${2//,/ }"; shift ;;
        --only=*) ONLY="${1#--only=}"; ONLY="${ONLY//,/ }" ;;
        -h|--help) usage ;;
        -*) echo "gpu_check: unknown option $1" >&2; usage ;;
        *) [[ -z "$OUT" ]] || { echo "gpu_check: one OUT folder, got '$OUT' and '$1'" >&2; usage; }
           OUT="$1" ;;
    esac
    shift
done
[[ -n "$OUT" ]] || usage
for step in $ONLY; do
    [[ " $STEPS " == *" $step "* ]] || { echo "gpu_check: --only: unknown step '$step'" >&2; usage; }
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2
mkdir -p "$OUT" || exit 2
OUT="$(cd "$OUT" && pwd)"
PY="${PYTHON:-python3}"
LOG="$OUT/gpu_check.log"
STATE="$(mktemp -d)"
trap 'rm -rf "$STATE"' EXIT
# the files this script writes, from an earlier run into the same folder: never reported as new
rm -f "$LOG" "$OUT/summary.md" "$OUT/train.json" "$OUT/encode.json" "$OUT/encode.png" \
    "$OUT/generate.json" "$OUT/train-compiled.json"
export PYTHONUNBUFFERED=1
START=$(date +%s)
BUDGET="${GPU_CHECK_BUDGET_S:-$((DRY ? 300 : 480))}"
DEADLINE=$((START + BUDGET))
MODE=$([[ $DRY == 1 ]] && echo dry || echo gpu)

stamp() {
    printf '[%s +%ss] %s\n' "$(date -u +%H:%M:%S)" "$(($(date +%s) - START))" "$*" | tee -a "$LOG"
}

selected() {
    [[ -z "$ONLY" || " $ONLY " == *" $1 "* ]]
}

# One line per step for the summary: name, exit status (or a word), seconds, note.
record() {
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$STATE/steps.tsv"
    summarize >/dev/null 2>&1
}

# run_step NAME LIMIT_S COMMAND...: runs COMMAND under LIMIT_S (or less, if the budget has less
# left), its output into the log and the step's own file (the terminal gets the timestamps and the
# summary: what a tool that keeps the end of the output shows); records how it ended.
run_step() {
    local name=$1 limit=${GPU_CHECK_STEP_TIMEOUT_S:-$2} left began rc
    shift 2
    if ! selected "$name"; then
        return
    fi
    left=$((DEADLINE - $(date +%s)))
    ((left < 0)) && left=0
    if ((left < 20)); then
        stamp "$name: not started, ${left}s left of the ${BUDGET}s budget"
        record "$name" "not run" 0 "out of time: ${left}s left of the ${BUDGET}s budget"
        return
    fi
    ((limit > left)) && limit=$left
    stamp "$name: start (limit ${limit}s): $*"
    began=$(date +%s)
    timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$LOG" >"$STATE/$name.out"
    rc=${PIPESTATUS[0]}
    stamp "$name: end, exit status $rc after $(($(date +%s) - began))s"
    if ((rc == 124 || rc == 137)); then
        record "$name" "timeout" $(($(date +%s) - began)) "timed out after ${limit}s"
    else
        record "$name" "$rc" $(($(date +%s) - began)) "$(grep -v '^[[:space:]]*$' "$STATE/$name.out" | tail -n 1)"
    fi
}

# -- setup: python3 with torch, this checkout's seqkit, the environment recorded --------------------

setup() {
    local began missing wheels
    began=$(date +%s)
    stamp "setup: start ($MODE mode, python: $PY, budget ${BUDGET}s)"
    if ! command -v "$PY" >/dev/null; then
        record setup 1 0 "no $PY on PATH (set PYTHON to an interpreter that has torch)"
        return
    fi
    # this checkout's code first, whatever else is installed (an installed seqkit gives the entry
    # points; the names are the same)
    export PYTHONPATH="$ROOT:$ROOT/plugins${PYTHONPATH:+:$PYTHONPATH}"
    missing=$("$PY" - <<'EOF'
import importlib.util
import sys

needed = {"torch": "torch", "pluggy": "pluggy", "click": "click", "safetensors": "safetensors",
          "tomli_w": "tomli-w", "numpy": "numpy", "tokenizers": "tokenizers", "sacrebleu": "sacrebleu",
          "matplotlib": "matplotlib", "pytest": "pytest"}
if sys.version_info < (3, 11):
    needed["tomli"] = "tomli"
print(" ".join(dist for module, dist in needed.items() if importlib.util.find_spec(module) is None))
EOF
    )
    if [[ -n "$missing" ]]; then
        wheels="${SEQKIT_WHEELS:-$ROOT/.whl}"
        stamp "setup: missing python packages: $missing"
        if [[ -d "$wheels" ]]; then
            stamp "setup: installing them from $wheels (no network) into $STATE/deps"
            # shellcheck disable=SC2086  # one word per package
            "$PY" -m pip install -q --no-index --no-deps --find-links "$wheels" --target "$STATE/deps" \
                $missing 2>&1 | tee -a "$LOG"
            export PYTHONPATH="$PYTHONPATH:$STATE/deps"
        fi
    fi
    if ! "$PY" -c 'import importlib.metadata as m; m.distribution("seqkit")' 2>/dev/null; then
        stamp "setup: seqkit is not installed: pip install --no-deps --no-build-isolation --no-index -e ."
        if ! timeout 120 "$PY" -m pip install -q --no-deps --no-build-isolation --no-index -e "$ROOT" 2>&1 \
                | tee -a "$LOG"; then
            # the code is on PYTHONPATH already; what pip would add is the entry points of group
            # "seqkit" that register the built-in plugins: written here from pyproject.toml
            stamp "setup: pip failed; seqkit's entry points from pyproject.toml in $STATE/site instead"
            "$PY" - "$ROOT/pyproject.toml" "$STATE/site" <<'EOF' 2>&1 | tee -a "$LOG"
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # python < 3.11
    import tomli as tomllib

project = tomllib.loads(Path(sys.argv[1]).read_text())["project"]
info = Path(sys.argv[2]) / f"{project['name']}-{project['version']}.dist-info"
info.mkdir(parents=True)
(info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
(info / "entry_points.txt").write_text("".join(
    f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in points.items())
    for group, points in project["entry-points"].items()))
EOF
            export PYTHONPATH="$PYTHONPATH:$STATE/site"
        fi
    fi
    if ! "$PY" - "$ROOT" "$STATE/env.json" <<'EOF' 2>&1 | tee -a "$LOG" >"$STATE/setup.out"
import json
import platform
import subprocess
import sys
from pathlib import Path

root, out = Path(sys.argv[1]), Path(sys.argv[2])
env = {"python": platform.python_version()}
import torch

env.update(torch=torch.__version__, cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())
if torch.cuda.is_available():
    env["gpu"] = torch.cuda.get_device_name(0)
    env["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
try:
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                          "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
    env["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
except (OSError, subprocess.SubprocessError) as exc:
    env["nvidia_smi"] = f"not available ({type(exc).__name__})"
try:
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, timeout=30)
    env["commit"] = commit.stdout.strip() or "unknown (no git)"
except (OSError, subprocess.SubprocessError):
    env["commit"] = "unknown (no git)"
import seqkit
from seqkit.plugins import make_plugin_manager

env["seqkit"] = str(Path(seqkit.__file__).parent)
from seqkit.backends import get_backend

env["encoders"] = make_plugin_manager().names("encoder")
env["cpu"] = get_backend("cpu").device_name()
out.write_text(json.dumps(env))
print("setup:", json.dumps(env))
if Path(seqkit.__file__).resolve().parent != (root / "seqkit").resolve():
    sys.exit(f"setup: import seqkit gives {seqkit.__file__}, not this checkout's {root / 'seqkit'}")
if not {"lstm", "transformer"} <= set(env["encoders"]):
    sys.exit(f"setup: seqkit's built-in plugins are not registered (encoders: {env['encoders']}); "
             "is seqkit installed (pip install -e .)?")
EOF
    then
        record setup 1 $(($(date +%s) - began)) "$(grep -v '^[[:space:]]*$' "$STATE/setup.out" | tail -n 1)"
        return
    fi
    if [[ -n "$missing" ]] && ! "$PY" -c "import $(echo "$missing" | tr ' -' ',_')" 2>/dev/null; then
        record setup 1 $(($(date +%s) - began)) "missing python packages: $missing; no network here: put \
their wheels in .whl/ (pip download --no-deps -d .whl NAME) or \$SEQKIT_WHEELS"
        return
    fi
    stamp "setup: end after $(($(date +%s) - began))s"
    record setup 0 $(($(date +%s) - began)) "seqkit from $ROOT"
}

# -- the summary: OUT/summary.md from the step records and the JSON files -------------------------

summarize() {
    "$PY" - "$OUT" "$STATE" "$MODE" "$(($(date +%s) - START))" <<'EOF'
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

out, state, mode, elapsed = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
dry = mode == "dry"
steps = []
if (state / "steps.tsv").exists():
    for line in (state / "steps.tsv").read_text().splitlines():
        name, status, seconds, note = (line.split("\t") + ["", "", ""])[:4]
        steps.append({"name": name, "status": status, "seconds": seconds, "note": note})
env = json.loads((state / "env.json").read_text()) if (state / "env.json").exists() else {}
OPTIONAL = {"train-compiled"}
OUTPUTS = {"train": "train.json", "encode": "encode.json", "generate": "generate.json",
           "train-compiled": "train-compiled.json"}


def bench(name):
    path = out / OUTPUTS[name]
    return json.loads(path.read_text()) if path.exists() else None


def results(name):
    """(meta, rows, settings) of a bench that wrote rows, else None."""
    data = bench(name)
    if not data or not data.get("rows"):
        return None
    return data["meta"], data["rows"], data["meta"]["settings"]


def tests():
    """(name, outcome, detail) of each test, from the junit file, or from pytest -v's lines when a
    killed pytest wrote none."""
    path = state / "cuda-tests.xml"
    if not path.exists():
        output = state / "cuda-tests.out"
        text = output.read_text(errors="replace") if output.exists() else ""
        return [(name, outcome.lower(), "") for name, outcome in
                re.findall(r"^tests/test_cuda\.py::(\S+) (PASSED|FAILED|SKIPPED|ERROR)", text, re.M)]
    found = []
    for case in ET.parse(path).iter("testcase"):
        outcome, detail = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed"}.get(child.tag, child.tag)
                detail = (child.get("message") or (child.text or "")).strip().splitlines()
                detail = detail[0] if detail else ""
        found.append((case.get("name"), outcome, detail))
    return found


def verdict(step):
    """(failed, what happened) of one step."""
    status, name = step["status"], step["name"]
    if status == "skipped":
        return False, f"skipped: {step['note']}"
    if status in ("not run", "timeout"):
        return True, step["note"]
    if status != "0":
        return True, f"exit status {status}: {step['note']}"
    if name == "cuda-tests":
        cases = tests()
        if not cases:
            return True, "no test results"
        counts = {}
        for case in cases:
            counts[case[1]] = counts.get(case[1], 0) + 1
        told = ", ".join(f"{n} {outcome}" for outcome, n in counts.items())
        bad = [c for c in cases if c[1] in ("failed", "error")]
        if bad:
            return True, f"{told}; first: {bad[0][0]}: {bad[0][2]}"
        skipped = [c for c in cases if c[1] == "skipped"]
        if skipped and not dry:  # on a GPU every test must run
            return True, f"{told}: {skipped[0][2]}"
        return False, f"ok: {told}" + (f" ({skipped[0][2]})" if skipped else "")
    if name in OUTPUTS:
        data = bench(name)
        if data is None:
            return True, f"no {OUTPUTS[name]} written"
        rows = data.get("rows") or []
        bad = [r for r in rows if r.get("status") != "ok"]
        if not rows:
            return True, "no rows"
        if bad:
            r = bad[0]
            return True, (f"{len(bad)} of {len(rows)} rows not ok: {r['architecture']} {r['mode']} "
                          f"L={r['length']} {r['implementation']}: {r['status']}")
        return False, f"ok: {len(rows)} rows in {OUTPUTS[name]}"
    return False, "ok" if name != "setup" else f"ok: {step['note']}"


def cell(value, spec=",.0f", scale=1.0):
    return "-" if value is None else format(value * scale, spec)


def span(row, key, spec=",.0f"):
    if row is None or row.get(key) is None:
        return "-"
    return f"{cell(row[key], spec)} ({cell(row[key + '_min'], spec)}-{cell(row[key + '_max'], spec)})"


def shape(settings):
    return (f"d_model {settings['d_model']}, {settings['heads']} heads, ffn {settings['ffn_size']}, "
            f"{settings['layers']}+{settings['layers']} layers, vocabulary {settings['vocab']:,}")


def find(rows, **keys):
    return next((r for r in rows if all(r.get(k) == v for k, v in keys.items())), None)


lines = []
device = env.get("gpu") or f"no GPU (torch.cuda.is_available() is false), CPU: {env.get('cpu', '?')}"
lines.append(f"# seqkit GPU check{' (dry run on the CPU: tiny sizes, numbers not comparable)' if dry else ''}")
lines.append("")
lines.append(f"Device: {device}; torch {env.get('torch', '?')} (CUDA {env.get('cuda')}), python "
             f"{env.get('python', '?')}; nvidia-smi: {env.get('nvidia_smi', '?')}; seqkit commit "
             f"{env.get('commit', '?')}; {elapsed} s in all (`bash examples/gpu_check.sh"
             f"{' --dry' if dry else ''} OUT`).")
lines += ["", "| step | result | seconds |", "| --- | --- | ---: |"]
failed = False
for step in steps:
    bad, result = verdict(step)
    if bad and step["name"] in OPTIONAL:  # shown, but the check does not fail for it
        result = f"{result} (optional step)"
    failed |= bad and step["name"] not in OPTIONAL
    lines.append(f"| {step['name']} | {result.replace('|', '/')} | {step['seconds']} |")

cases = tests()
if cases and any(outcome != "skipped" for _, outcome, _ in cases):  # all skipped: the step's line says why
    lines += ["", "## CUDA tests (tests/test_cuda.py)", "", "| test | outcome | detail |", "| --- | --- | --- |"]
    lines += [f"| {name} | {outcome} | {detail.replace('|', '/')[:200]} |" for name, outcome, detail in cases]

for name, title in (("train", "eager"), ("train-compiled", "torch.compile")):
    found = results(name)
    if found is None:
        continue
    meta, rows, settings = found
    lines += ["", f"## Training, {title}: seqkit against raw nn.Transformer ({shape(settings)}), "
              f"{meta['precision']}, {settings['batch_tokens']:,} target tokens per step", "",
              "| L | batch | seqkit tokens/s (min-max) | raw tokens/s (min-max) | seqkit / raw | seqkit MFU | "
              "raw MFU | seqkit ms/step | peak GiB (seqkit) |",
              "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for length in settings["lengths"]:
        mine, raw = find(rows, length=length, implementation="seqkit"), find(rows, length=length, implementation="raw")
        if mine is None:
            continue
        lines.append(f"| {length} | {mine['batch_size']} | {span(mine, 'tokens_per_s')} | {span(raw, 'tokens_per_s')} | "
                     f"{cell(mine.get('ratio_vs_baseline'), '.3f')} | {cell(mine.get('mfu'), '.1%')} | "
                     f"{cell(raw and raw.get('mfu'), '.1%')} | {cell(mine.get('ms_per_step'), '.1f')} | "
                     f"{cell(mine.get('peak_memory_bytes'), '.2f', 2**-30)} |")
    best = find(rows, length=256, implementation="seqkit")
    if not dry and best and best.get("tokens_per_s"):
        met = best["tokens_per_s"] >= 450e3 and (best.get("mfu") or 0) >= 0.25
        lines += ["", f"Goal at L=256 (≥ 450k target tokens/s and ≥ 25% MFU): {'met' if met else 'not met'} "
                  f"({best['tokens_per_s']:,.0f} tokens/s, MFU {cell(best.get('mfu'), '.1%')})."]

found = results("encode")
if found is not None:
    meta, rows, settings = found
    lengths = settings["lengths"]
    lines += ["", f"## Encode latency at batch 1, ms, median of {settings['repeat']} ({shape(settings)}, "
              f"{meta['precision']})", "", "| L | " + " | ".join(f"{n:,}" for n in lengths) + " |",
              "| --- |" + " ---: |" * len(lengths)]
    for arch in settings["architectures"]:
        cells = [cell((find(rows, architecture=arch, length=n) or {}).get("ms_per_step"), ".2f") for n in lengths]
        lines.append(f"| {arch} | " + " | ".join(cells) + " |")
    if (out / "encode.png").exists():
        lines += ["", "![encode latency against length](encode.png)"]

found = results("generate")
if found is not None:
    meta, rows, settings = found
    lines += ["", f"## Generation, {', '.join(map(str, settings['lengths']))} new tokens ({shape(settings)}, "
              f"{meta['precision']})", "",
              "| architecture | batch | greedy, cached: tokens/s (min-max) | ms/step | recompute tokens/s | "
              "cached / recompute | beam 4 tokens/s | beam 4 / greedy |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for arch in settings["architectures"]:
        for size in settings["generate_batches"]:
            pick = {impl: find(rows, architecture=arch, batch_size=size, implementation=impl)
                    for impl in ("seqkit", "recompute", "beam4")}
            greedy = pick["seqkit"]
            if greedy is None:
                continue
            per_step = None if not greedy.get("tokens_per_s") else 1e3 * size / greedy["tokens_per_s"]  # one token a row
            lines.append(f"| {arch} | {size} | {span(greedy, 'tokens_per_s')} | {cell(per_step, '.2f')} | "
                         f"{cell((pick['recompute'] or {}).get('tokens_per_s'))} | "
                         f"{cell(greedy.get('ratio_vs_baseline'), '.2f')} | "
                         f"{cell((pick['beam4'] or {}).get('tokens_per_s'))} | "
                         f"{cell((pick['beam4'] or {}).get('ratio_vs_baseline'), '.2f')} |")
    if not dry:
        goals = []
        for size, goal in ((1, 500), (32, 10_000)):
            row = find(rows, architecture="transformer", batch_size=size, implementation="seqkit")
            if row and row.get("tokens_per_s"):
                goals.append(f"batch {size} ≥ {goal:,}: {'met' if row['tokens_per_s'] >= goal else 'not met'} "
                             f"({row['tokens_per_s']:,.0f})")
        if goals:
            lines += ["", "Greedy goals (transformer tokens/s): " + "; ".join(goals) + "."]

text = "\n".join(lines) + "\n"
temporary = out / "summary.md.tmp"
temporary.write_text(text)
temporary.replace(out / "summary.md")
print(text)
sys.exit(1 if failed or not steps else 0)
EOF
}

# -- the steps ----------------------------------------------------------------------------------

setup

if ((DRY)); then
    SHAPE=(--backend cpu --precision fp32 --threads 1 --d-model 16 --layers 1 --heads 2 --ffn-size 32
           --vocab 64)
    TRAIN=(--lengths 8,16 --batch-tokens 64 --warmup 1 --repeat 2)
    ENCODE=(--lengths 8,16,32,64 --warmup 1 --repeat 2)
    GENERATE=(--lengths 8 --generate-batch 1,2 --warmup 1 --repeat 2)
    LIMITS=(120 60 60 60)  # cuda-tests train encode generate
else
    # transformer-base: d_model 512, 8 heads, ffn 2048, 6+6 layers, 32k vocabulary; bf16
    SHAPE=(--backend cuda --precision bf16 --d-model 512 --layers 6 --heads 8 --ffn-size 2048 --vocab 32000)
    TRAIN=(--lengths 256,1024 --batch-tokens 16384 --warmup 3 --repeat 10)
    ENCODE=(--lengths 64,128,256,512,1024,2048,4096 --warmup 3 --repeat 10)
    GENERATE=(--lengths 128 --generate-batch 1,32 --warmup 1 --repeat 5)
    LIMITS=(240 120 120 180)
fi

# -v: a line per test as it ends, in the log (and the summary) even if the step is killed
TEST_ARGS=(-m cuda -p no:cacheprovider -v -rfEs tests/test_cuda.py --junitxml "$STATE/cuda-tests.xml")
if "$PY" -c 'import pytest_timeout' 2>/dev/null; then
    TEST_ARGS+=(--timeout 150)  # one hanging test fails alone (pytest-timeout is on the GPU machines)
fi
# a collective that waits on nothing fails within a minute (seqkit.distributed.timeout)
run_step cuda-tests "${LIMITS[0]}" env SEQKIT_DISTRIBUTED_TIMEOUT=60 "$PY" -m pytest "${TEST_ARGS[@]}"
run_step train "${LIMITS[1]}" "$PY" -m seqkit bench "${SHAPE[@]}" --arch transformer --mode train \
    --baseline raw "${TRAIN[@]}" --json "$OUT/train.json"
run_step encode "${LIMITS[2]}" "$PY" -m seqkit bench "${SHAPE[@]}" --arch transformer,lstm --mode encode \
    "${ENCODE[@]}" --json "$OUT/encode.json" --plot "$OUT/encode.png"
run_step generate "${LIMITS[3]}" "$PY" -m seqkit bench "${SHAPE[@]}" --arch transformer,lstm \
    --mode generate "${GENERATE[@]}" --json "$OUT/generate.json"
if ((DRY)); then
    selected train-compiled && record train-compiled skipped 0 \
        "not in --dry (compiling takes tens of seconds on a CPU)"
elif selected train-compiled && ((DEADLINE - $(date +%s) >= 150)); then
    run_step train-compiled 240 "$PY" -m seqkit bench "${SHAPE[@]}" --arch transformer --mode train \
        --baseline raw --compile --lengths 256 --batch-tokens 16384 --warmup 3 --repeat 10 \
        --json "$OUT/train-compiled.json"
elif selected train-compiled; then
    stamp "train-compiled: left out (optional: needs 150 s of the budget left)"
    record train-compiled skipped 0 "optional, needs 150 s of the budget left"
fi

stamp "done: $OUT/summary.md"
summarize | tee -a "$LOG"
exit "${PIPESTATUS[0]}"
