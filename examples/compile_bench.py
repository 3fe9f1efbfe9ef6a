"""Compiled against eager greedy decoding (seqkit generate --compile) on the issue's Transformer
(d_model 256, 4 heads, ffn 1024, 3+3 layers, vocabulary 8,000, post-norm, random weights), one thread,
interleaved; the compilation (cold inductor cache) is timed apart.

    OMP_NUM_THREADS=1 python examples/compile_bench.py [--new-tokens 64] [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="inductor-"))  # a cold cache

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generation_bench import seqkit_model, sources  # noqa: E402

from seqkit.generate import SearchConfig, generate  # noqa: E402

BATCHES = (1, 32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, _ = seqkit_model("transformer")
    data = {batch: sources(batch) for batch in BATCHES}

    def run(batch: int, compile: bool) -> tuple[float, list]:
        source, mask = data[batch]
        started = time.perf_counter()
        found = generate(model, source, mask, SearchConfig(max_len=args.new_tokens, min_len=args.new_tokens,
                                                           compile=compile))
        return time.perf_counter() - started, [row[0].tokens for row in found]

    started = time.perf_counter()
    for batch in BATCHES:
        run(batch, True)
    compile_seconds = time.perf_counter() - started
    for batch in BATCHES:
        same = run(batch, False)[1] == run(batch, True)[1]
        print(f"batch {batch}: compiled tokens == eager tokens: {same}")
    times = {(batch, compiled): [] for batch in BATCHES for compiled in (False, True)}
    ratios: dict[int, list[float]] = {batch: [] for batch in BATCHES}
    for repetition in range(args.repeat):
        for batch in BATCHES:
            order = (False, True) if repetition % 2 == 0 else (True, False)
            seconds = {compiled: run(batch, compiled)[0] for compiled in order}
            for compiled in order:
                times[batch, compiled].append(seconds[compiled])
            ratios[batch].append(seconds[False] / seconds[True])
    with open("/proc/cpuinfo") as info:
        cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "a CPU")
    print(f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, 1 thread")
    print(f"compilation (first compiled calls at batch {' and '.join(map(str, BATCHES))}, cold cache): "
          f"{compile_seconds:.1f} s")
    for batch in BATCHES:
        tokens = batch * args.new_tokens
        eager = [tokens / s for s in times[batch, False]]
        compiled = [tokens / s for s in times[batch, True]]
        print(f"greedy batch {batch:2d}: eager {statistics.median(eager):7.0f} tokens/s "
              f"({min(eager):.0f}-{max(eager):.0f}), compiled {statistics.median(compiled):7.0f} tokens/s "
              f"({min(compiled):.0f}-{max(compiled):.0f}), "
              f"compiled / eager {statistics.median(ratios[batch]):.2f}x "
              f"({min(ratios[batch]):.2f}-{max(ratios[batch]):.2f})")


if __name__ == "__main__":
    main()
