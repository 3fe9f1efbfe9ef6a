"""Endurance: a long training run of a tiny model that samples the process's resident memory (RSS)
every few hundred steps, to show that training, evaluation and checkpointing do not leak.

    python examples/endurance.py                          # 20,000 steps, a sample every 1,000
    python examples/endurance.py --steps 2000 --every 100 --warmup 200

It trains the ``reverse`` task with an LSTM encoder and a one-layer Transformer decoder (d_model 32)
through ``seqkit.train``, the path ``seqkit run`` takes, evaluating and writing a checkpoint every
``--eval-every`` steps into a temporary run folder. It prints one row per sample and the growth from
the first sample after ``--warmup`` steps (allocator pools and caches filled) to the last one.
This is a measurement, not a test: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

import seqkit
from seqkit.backends import get_backend
from seqkit.trainer import Events

MIB = 1024 * 1024


def resident_bytes() -> int:
    """RSS now: /proc/self/statm on Linux; elsewhere the peak, which can only grow."""
    statm = Path("/proc/self/statm")
    if statm.exists():
        return int(statm.read_text().split()[1]) * resource.getpagesize()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def config(steps: int, eval_every: int, train_size: int) -> dict:
    return {
        "seed": 1,
        "task": {"name": "reverse", "symbols": 16, "min_len": 2, "max_len": 12, "train_size": train_size,
                 "valid_size": 100, "test_size": 0},
        "model": {"d_model": 32, "encoder": {"name": "lstm"},
                  "decoder": {"name": "transformer", "layers": 1, "heads": 2}},
        "data": {"batch_tokens": 256, "max_source_len": 16, "max_target_len": 16},
        "train": {"steps": steps, "lr": 2e-3, "warmup_steps": 200, "eval_every": eval_every,
                  "eval_examples": 50, "log_every": 100, "keep_last": 2},
        "backend": "cpu",
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20_000, help="optimizer steps (default 20000)")
    parser.add_argument("--every", type=int, default=1_000, help="steps between RSS samples")
    parser.add_argument("--warmup", type=int, default=2_000,
                        help="steps before the baseline sample that growth is measured from")
    parser.add_argument("--eval-every", type=int, default=1_000, help="steps between evaluations/checkpoints")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--train-size", type=int, default=4_000, help="training examples (default 4000)")
    args = parser.parse_args(argv)
    if min(args.steps, args.every, args.eval_every, args.threads, args.train_size) < 1 or args.warmup < 0:
        parser.error("--steps, --every, --eval-every, --threads and --train-size must be at least 1, "
                     "--warmup at least 0")
    torch.set_num_threads(args.threads)

    samples: list[tuple[int, float, float]] = []  # (step, seconds since start, RSS bytes)
    started = time.perf_counter()

    def step(step: int, total: int, loss: float, rate: float) -> None:
        if step % args.every == 0 or step == total:
            samples.append((step, time.perf_counter() - started, resident_bytes()))

    print(f"seqkit {seqkit.__version__}, torch {torch.__version__}, {get_backend('cpu').device_name()}, "
          f"{args.threads} thread(s), {args.steps} steps")
    with tempfile.TemporaryDirectory() as folder:
        result = seqkit.train(config(args.steps, args.eval_every, args.train_size), out=Path(folder) / "run",
                              test=False, events=Events(step=step))
    elapsed = time.perf_counter() - started

    baseline = next(((s, t, r) for s, t, r in samples if s >= args.warmup), samples[0])
    print(f"\n{'step':>8} {'seconds':>9} {'RSS MiB':>9} {'vs baseline MiB':>16}")
    for s, t, r in samples:
        mark = "  <- baseline" if (s, t, r) == baseline else ""
        print(f"{s:>8} {t:>9.1f} {r / MIB:>9.1f} {(r - baseline[2]) / MIB:>+16.2f}{mark}")
    final = samples[-1]
    growth = final[2] - baseline[2]
    span = max(final[0] - baseline[0], 1)
    print(f"\nRSS {baseline[2] / MIB:.1f} MiB at step {baseline[0]} -> {final[2] / MIB:.1f} MiB at step "
          f"{final[0]}: {growth / MIB:+.2f} MiB ({growth / 1024 / span * 1000:+.1f} KiB per 1000 steps); "
          f"{elapsed:.0f} s, {args.steps / elapsed:.0f} steps/s; best {result.summary['best']}")
    return {"baseline_mib": baseline[2] / MIB, "final_mib": final[2] / MIB, "growth_mib": growth / MIB,
            "seconds": elapsed}


if __name__ == "__main__":
    main()
