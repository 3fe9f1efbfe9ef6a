"""How often beam search's best output scores below greedy search's, on a trained run.

    OMP_NUM_THREADS=1 seqkit run examples/translate.toml --out /tmp/translate-run
    python examples/beam_vs_greedy.py /tmp/translate-run [--inputs N] [--beam K]

Beam search is not guaranteed to beat greedy search, but with a sound stopping rule it rarely
loses to it: a beam that stopped while a live hypothesis still scored better loses often. Reads the
first N sources of the run's test split (the task's ``test`` file), decodes them greedily and with
beam K through the Python API, and prints how many beam outputs score below the greedy one.
"""

from __future__ import annotations

import argparse
import time

import seqkit

TOLERANCE = 1e-4  # float32 sums in two different batch layouts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run folder or checkpoint")
    parser.add_argument("--inputs", type=int, default=300, help="first N sources of the test split")
    parser.add_argument("--beam", type=int, default=4)
    args = parser.parse_args()

    model = seqkit.load(args.run)
    texts = [example.source for example in model.task.examples("test")][: args.inputs]
    start = time.perf_counter()
    greedy = model.generate(texts, scores=True)
    beam = model.generate(texts, beam=args.beam, scores=True)
    seconds = time.perf_counter() - start
    worse = [(t, g, b) for t, g, b in zip(texts, greedy, beam, strict=True) if b.score < g.score - TOLERANCE]
    better = sum(b.score > g.score + TOLERANCE for g, b in zip(greedy, beam, strict=True))
    print(f"{len(texts)} inputs, beam {args.beam}: top-1 below greedy on {len(worse)}, above on {better}, "
          f"equal on {len(texts) - len(worse) - better} ({seconds:.1f} s)")
    for text, g, b in worse[:5]:
        print(f"  {text!r}: greedy {g.text!r} ({g.score:.3f}), beam {b.text!r} ({b.score:.3f})")


if __name__ == "__main__":
    main()
