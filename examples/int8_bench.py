"""fp32 against int8 on one trained run: quality on the test split, then tokens/s (greedy at batch 1
and 32, beam 4 at batch 8).

    OMP_NUM_THREADS=1 python int8_bench.py RUN [--rounds 5] [--batch1 200] [--batch32 1024] [--beam8 256]

One thread; the two models alternate (fp32, int8, fp32, int8, ...) in one process; a ratio is
taken within a round. Tokens/s counts output tokens (end of sequence not included)."""

import argparse
import platform
import statistics
import time

import torch

import seqkit

parser = argparse.ArgumentParser()
parser.add_argument("run")
parser.add_argument("--rounds", type=int, default=5)
parser.add_argument("--batch1", type=int, default=200, help="sentences decoded one at a time")
parser.add_argument("--batch32", type=int, default=1024, help="sentences decoded 32 at a time")
parser.add_argument("--beam8", type=int, default=256, help="sentences decoded with beam 4, 8 at a time")
args = parser.parse_args()
torch.set_num_threads(1)

models = {p: seqkit.load(args.run, precision=p) for p in ("fp32", "int8")}
cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
           platform.processor())
print(f"cpu: {cpu}; torch {torch.__version__}, quantized engine {torch.backends.quantized.engine}, 1 thread")

sources = [e.source for e in models["fp32"].task.examples("test")]
outputs = {}
for precision, model in models.items():
    metrics, _ = model.evaluate("test")
    outputs[precision] = model.generate(sources)
    print(f"{precision}: bleu {metrics['bleu']:.2f}  exact_match {metrics['exact_match']:.4f}  "
          f"chrf {metrics['chrf']:.2f}  loss {metrics['loss']:.4f}  examples {metrics['examples']}")
same = sum(a == b for a, b in zip(outputs["fp32"], outputs["int8"], strict=True))
print(f"int8 greedy outputs equal to fp32's: {same}/{len(sources)}")


def tokens_per_second(model, texts, batch, beam):
    start = time.perf_counter()
    found = model.generate(texts, scores=True, batch_size=batch, beam=beam)
    elapsed = time.perf_counter() - start
    return sum(len(g.tokens) for g in found) / elapsed


CASES = {"greedy, batch 1": (1, 1, args.batch1), "greedy, batch 32": (32, 1, args.batch32),
         "beam 4, batch 8": (8, 4, args.beam8)}
rates = {(case, p): [] for case in CASES for p in models}
for _ in range(args.rounds):
    for case, (batch, beam, count) in CASES.items():
        texts = (sources * (count // len(sources) + 1))[:count]
        for precision, model in models.items():
            rates[case, precision].append(tokens_per_second(model, texts, batch, beam))
print("| tokens/s (median of rounds) | fp32 | int8 | int8 / fp32, median [min, max] of rounds |")
print("| --- | ---: | ---: | ---: |")
for case in CASES:
    fp32, int8 = rates[case, "fp32"], rates[case, "int8"]
    ratios = sorted(b / a for a, b in zip(fp32, int8, strict=True))
    print(f"| {case} | {statistics.median(fp32):,.0f} | {statistics.median(int8):,.0f} | "
          f"{statistics.median(ratios):.2f} [{ratios[0]:.2f}, {ratios[-1]:.2f}] |")
