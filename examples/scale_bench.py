"""How start-up and memory scale with the corpus: prepared (memory-mapped) data against corpus size.

For each size N (pairs) it writes a translation corpus of N pairs (number words, one or two joined, from the
shipped numbers data: "three hundred and two and forty-one<TAB>trois cent deux et quarante et un",
seeded, so every size is the same kind of text), then measures:

  prepare      `seqkit prepare` from nothing: tokenizer training, encoding, writing (s, pairs/s)
  disk         bytes of the prepared folder
  first step   a second `seqkit.train` of the same config: wall time from the process start to the
               end of the first training step (all of it reading what was prepared), and the
               process's peak RSS and its PSS after training (shared pages counted once between
               processes)
  2 processes  the same under torchrun with 2 processes: each rank's peak RSS and PSS

    python examples/scale_bench.py --sizes 200000 1000000 --out /tmp/scale   # writes a table

Memory is read from /proc (Linux). The cache of prepared data goes to OUT/cache (SEQKIT_CACHE).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NUMBERS = HERE / "data" / "numbers.train.tsv"

CONFIG = """\
seed = 1

[task]
name = "translation"
train = "{train}"
valid = "{valid}"
tokenizer = "bpe"
vocab_size = 8000
shared_vocab = true

[model]
d_model = 64

[model.encoder]
name = "gru"

[model.decoder]
name = "gru"

[data]
batch_tokens = 4096
max_source_len = 64
max_target_len = 64

[train]
steps = 2
eval_every = 1000
eval_examples = 20
log_every = 1
"""

# Runs in a fresh process (or in each process under torchrun): trains the config's two steps, notes
# when the first step ended (rank 0 hears the events), then prints the process's memory: peak RSS,
# and PSS now (shared pages, such as a memory map two processes read, counted once between them).
FIRST_STEP = """\
import json, os, resource, sys, time
started = float(sys.argv[3])
import seqkit
from seqkit import Events

first = []
seqkit.train(sys.argv[1], out=sys.argv[2], test=False, restart=True,
             events=Events(step=lambda *a: first or first.append(time.time() - started)))
with open("/proc/self/smaps_rollup") as f:
    pss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
rank = int(os.environ.get("RANK", 0))
report = {"rank": rank, "seconds": first[0] if first else None,
          "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "pss": pss}
with open(os.path.join(sys.argv[2], os.pardir, f"report-{rank}.json"), "w") as f:
    json.dump(report, f)
"""


def write_corpus(path: Path, pairs: int, seed: int = 0) -> None:
    """``pairs`` lines of one or two random lines of the numbers data joined, both sides alike."""
    lines = [line.rstrip("\n").split("\t") for line in NUMBERS.read_text(encoding="utf-8").splitlines()]
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as out:
        for _ in range(pairs):
            parts = [lines[rng.randrange(len(lines))] for _ in range(rng.choice((1, 2)))]
            out.write(" and ".join(p[0] for p in parts) + "\t" + " et ".join(p[1] for p in parts) + "\n")


def run(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


# `seqkit prepare` in a child that reports its own peak RSS (this process's children's peak would
# mix the sizes measured before)
PREPARE = ("import json, resource, sys\nfrom seqkit.cli import main\ntry:\n    main()\nfinally:\n"
           "    print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, file=sys.stderr)")


def prepare(config: Path, env: dict[str, str]) -> tuple[float, int]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PREPARE, "prepare", str(config)], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"seqkit prepare failed ({done.returncode}):\n{done.stderr[-3000:]}")
    peak = next(int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("PEAK "))
    return time.perf_counter() - started, peak


def first_steps(config: Path, out: Path, env: dict[str, str], nproc: int) -> list[dict]:
    script = out / "first_step.py"
    script.write_text(FIRST_STEP, encoding="utf-8")
    launcher = [sys.executable] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    for old in out.glob("report-*.json"):
        old.unlink()
    command = [*launcher, str(script), str(config), str(out / f"run{nproc}"), str(time.time())]
    run(command, env)
    return [json.loads(path.read_text()) for path in sorted(out.glob("report-*.json"))]


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def measure(size: int, out: Path) -> dict:
    work = out / str(size)
    work.mkdir(parents=True, exist_ok=True)
    corpus, valid = work / "train.tsv", work / "valid.tsv"
    if not corpus.exists():
        write_corpus(corpus, size)
        write_corpus(valid, 200, seed=1)
    config = work / "scale.toml"
    config.write_text(CONFIG.format(train=corpus, valid=valid), encoding="utf-8")
    cache = work / "cache"
    env = {**os.environ, "SEQKIT_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    subprocess.run(["rm", "-rf", str(cache)], check=True)
    seconds, prepare_rss = prepare(config, env)
    one = first_steps(config, work, env, 1)
    two = first_steps(config, work, env, 2)
    return {"pairs": size, "tsv_bytes": corpus.stat().st_size, "prepare_s": seconds,
            "prepare_rss": prepare_rss, "pairs_per_s": size / seconds, "disk_bytes": folder_bytes(cache),
            "first_step": one[0], "two_processes": two}


def table(rows: list[dict]) -> str:
    head = ("| pairs | TSV | prepare | pairs/s | prepare peak RSS | prepared on disk | "
            "2nd start to first step | peak RSS / PSS, 1 process | peak RSS / PSS per rank, 2 processes |\n"
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
    mb = 1 << 20
    lines = []
    for r in rows:
        one, two = r["first_step"], r["two_processes"]
        ranks = ", ".join(f"{t['rss'] / mb:.0f} / {t['pss'] / mb:.0f} MB"
                          for t in sorted(two, key=lambda t: t["rank"]))
        lines.append(f"| {r['pairs']:,} | {r['tsv_bytes'] / mb:.0f} MB | {r['prepare_s']:.1f} s | "
                     f"{r['pairs_per_s']:,.0f} | {r['prepare_rss'] / mb:.0f} MB | "
                     f"{r['disk_bytes'] / mb:.0f} MB | {one['seconds']:.1f} s | "
                     f"{one['rss'] / mb:.0f} / {one['pss'] / mb:.0f} MB | {ranks} |")
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000, 1_000_000, 2_000_000, 5_000_000])
    parser.add_argument("--out", type=Path, default=Path("/tmp/seqkit-scale"))
    args = parser.parse_args(argv)
    rows = []
    for size in args.sizes:
        rows.append(measure(size, args.out))
        print(json.dumps(rows[-1]), flush=True)
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
