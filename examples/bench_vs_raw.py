"""seqkit's training step against the same model in raw PyTorch, from Python.

    python examples/bench_vs_raw.py [--threads N]

The same measurement as `seqkit bench --baseline raw --mode train`, run twice (timings on a shared
machine drift), printing seqkit/raw tokens/s per architecture and length.
"""

from __future__ import annotations

import argparse

from seqkit.bench import BenchSettings, run_bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--repeat", type=int, default=21)
    args = parser.parse_args()
    settings = BenchSettings(modes=("train",), lengths=(32, 128), baseline="raw",
                             repeat=args.repeat, warmup=3, threads=args.threads)
    runs = [run_bench(settings) for _ in range(2)]
    meta = runs[0].meta
    print(f"{meta['device']}, {meta['threads']} threads, torch {meta['torch']}")
    print(f"{'arch':12} {'len':>4} {'seqkit tok/s':>13} {'raw tok/s':>10}  seqkit/raw (run 1, run 2)")
    for row in runs[0].rows:
        if row.implementation != "seqkit":
            continue
        raw = next(r for r in runs[0].rows if r.implementation == "raw"
                   and (r.architecture, r.length) == (row.architecture, row.length))
        second = next(r for r in runs[1].rows if r.implementation == "seqkit"
                      and (r.architecture, r.length) == (row.architecture, row.length))
        print(f"{row.architecture:12} {row.length:4} {row.tokens_per_s:13,.0f} "
              f"{raw.tokens_per_s:10,.0f}  {row.ratio_vs_baseline:.3f}, "
              f"{second.ratio_vs_baseline:.3f}")


if __name__ == "__main__":
    main()
