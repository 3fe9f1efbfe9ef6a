"""The seed's experiment, done honestly: RNN, LSTM, GRU and Transformer on the same data and budget.

The project's seed text contrasts recurrent networks (computing over a sequence step by step) with
the Transformer (all positions at once). This script trains all four as encoder-decoder models on
the number-words translation data of ``examples/translate.toml`` (English -> French, BPE) and
reports what happened::

    python examples/seed_experiment.py                      # default budget (see --steps)
    python examples/seed_experiment.py --steps 300 --threads 1   # a busy machine: 1 thread is faster

What is the same for every architecture (everything not listed is translate.toml's):

* data, BPE tokenizers, seed, batches (``data.batch_tokens``), number of optimizer steps, AdamW,
  learning rate and its schedule (inverse square root after a linear warm-up), label smoothing 0.1,
  gradient clipping 1.0, embedding dropout 0.1, ``d_model`` 128, tied output embeddings;
* depth: as many layers as translate.toml's Transformer has, in the encoder and in the decoder,
  for each architecture (``--layers``; 2 + 2 at the time of writing); dropout 0.1 between layers
  (the Transformer keeps translate.toml's dropout, 0.1);
* the recurrent encoders are unidirectional (``bidirectional = false``: the seed's setup, and it
  keeps the encoder as wide as the Transformer's) and their decoders use the default Luong
  "general" attention over the encoder memory, with hidden size ``d_model``;
* translate.toml is read at start: a change to it while the script runs changes nothing;
* one evaluation, at the last step (no checkpoint selection: every model is scored as it is after
  the same number of steps), on ``train.eval_examples`` valid examples; then the test split, all
  of it, greedy decoding.

Outputs in ``--out`` (default ``runs/seed_experiment``): ``results.md`` (the table, also printed),
``results.json`` (the same numbers and the settings), ``loss_curves.png`` (training loss against
step, one line per architecture) and one seqkit run folder per architecture. Each run folder is
deleted and trained afresh on every invocation.

How to read the columns:

* final train loss: mean of the per-step training loss over the last 5% of steps; it includes
  label smoothing 0.1, so it is not comparable with the valid loss, which is plain cross-entropy
  per target token (what ``seqkit eval`` reports);
* test exact match, BLEU, chrF: seqkit's translation metrics on the whole test split (1,000 pairs
  unless ``--limit``);
* wall time: the whole ``seqkit.train`` call (tokenizers, encoding, training, the evaluation and
  the test decoding); train time: the training steps only;
* training tokens/s: target tokens per second of the training steps, as seqkit's trainer counts
  them (its last progress event, before the one evaluation, so no evaluation time is in it).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

import seqkit
from seqkit.config import read_toml
from seqkit.trainer import Events, TrainingError

EXAMPLES = Path(__file__).resolve().parent
CONFIG = EXAMPLES / "translate.toml"
ARCHITECTURES = ("rnn", "lstm", "gru", "transformer")
DEFAULT_STEPS = 600
DROPOUT = 0.1

COLUMNS = [("architecture", "architecture"), ("parameters", "parameters"),
           ("final_train_loss", "final train loss"), ("valid_loss", "valid loss"),
           ("test_exact_match", "test exact match (%)"), ("test_bleu", "test BLEU"),
           ("test_chrf", "test chrF"), ("wall_time_s", "wall time (s)"),
           ("train_time_s", "train time (s)"), ("train_tokens_per_s", "training tokens/s")]


def component_tables(arch: str, base: dict[str, Any], layers: int) -> tuple[dict, dict]:
    """The [model.encoder] and [model.decoder] tables of ``arch``: translate.toml's for the
    Transformer, and for a recurrent kind dropout 0.1 between layers, unidirectional, Luong
    "general" attention (the decoder's default, written out); ``layers`` layers in each."""
    if arch == "transformer":
        return ({**base["model"]["encoder"], "layers": layers},
                {**base["model"]["decoder"], "layers": layers})
    encoder = {"name": arch, "layers": layers, "dropout": DROPOUT, "bidirectional": False}
    decoder = {"name": arch, "layers": layers, "dropout": DROPOUT, "attention": "general"}
    return encoder, decoder


def base_config(data_dir: Path | None) -> dict[str, Any]:
    """translate.toml as a dict, its data paths made absolute (a dict config's relative paths are
    read from the current directory) or pointed at ``data_dir``'s sliced copies."""
    _, data = read_toml(CONFIG)
    for split in ("train", "valid", "test"):
        path = Path(data["task"][split])
        data["task"][split] = str(data_dir / path.name if data_dir else (CONFIG.parent / path).resolve())
    return data


def write_slices(out: Path, limit: int) -> Path:
    """The first ``limit`` lines of each split of translate.toml's data, under ``out/data``."""
    _, data = read_toml(CONFIG)
    folder = out / "data"
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test"):
        source = CONFIG.parent / data["task"][split]
        with source.open(encoding="utf-8") as f:
            lines = [line for _, line in zip(range(limit), f, strict=False)]
        (folder / source.name).write_text("".join(lines), encoding="utf-8")
    return folder


def run_one(arch: str, args: argparse.Namespace, manager, base: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(base)
    data["model"]["encoder"], data["model"]["decoder"] = component_tables(arch, base, args.layers)
    overrides = [f"train.steps={args.steps}", f"train.eval_every={args.steps}",
                 f"train.warmup_steps={args.warmup}", f"train.lr={args.lr}",
                 f"train.log_every={max(1, args.steps // 100)}", f"train.eval_examples={args.eval_examples}",
                 f"data.batch_tokens={args.batch_tokens}", f"seed={args.seed}"]
    folder = args.out / arch
    if folder.exists():
        shutil.rmtree(folder)  # a run folder with a checkpoint would be resumed, not retrained

    losses: list[float] = []
    times: list[float] = []
    rates: list[float] = []
    evaluated: dict[str, float] = {}

    def on_step(step: int, total: int, loss: float, rate: float) -> None:
        losses.append(loss)
        times.append(time.perf_counter())
        rates.append(rate)
        if not args.quiet and (step % max(1, total // 10) == 0 or step == total):
            print(f"  {arch:>11} step {step}/{total} loss {loss:.4f} {rate:,.0f} tok/s",
                  file=sys.stderr, flush=True)

    events = Events(step=on_step, evaluated=lambda step, metrics: evaluated.update(metrics))
    started = time.perf_counter()
    row: dict[str, Any] = {"architecture": arch, "steps": args.steps}
    try:
        result = seqkit.train(data, out=folder, overrides=overrides, events=events, manager=manager,
                              test=True, samples=3)
    except TrainingError as exc:  # a NaN loss: report it, go on with the other architectures
        row.update(diverged=str(exc), wall_time_s=time.perf_counter() - started)
        return row
    wall = time.perf_counter() - started
    tail = losses[-max(1, len(losses) // 20):]
    # train time: from the first to the last step callback, plus one typical step for the first
    steps_dt = [b - a for a, b in zip(times, times[1:], strict=False)]
    typical = sorted(steps_dt)[len(steps_dt) // 2] if steps_dt else 0.0
    row.update(
        parameters=result.summary["parameters"],
        final_train_loss=sum(tail) / len(tail),
        valid_loss=evaluated.get("loss"),
        valid_exact_match=evaluated.get("exact_match"),
        test_exact_match=100.0 * result.test.get("exact_match", math.nan),
        test_bleu=result.test.get("bleu"),
        test_chrf=result.test.get("chrf"),
        test_examples=result.test.get("examples"),
        wall_time_s=wall,
        train_time_s=(times[-1] - times[0] + typical) if times else None,
        train_tokens_per_s=rates[-1] if rates else None,
        train_loss_per_step=losses,
        samples=result.samples,
        folder=str(result.folder),
        overrides=overrides,
        encoder=data["model"]["encoder"],
        decoder=data["model"]["decoder"],
    )
    return row


def _cell(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if key == "parameters":
        return f"{value:,}"
    if key in ("wall_time_s", "train_time_s", "train_tokens_per_s"):
        return f"{value:,.0f}"
    if key in ("final_train_loss", "valid_loss"):
        return f"{value:.3f}"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |",
             "| " + " | ".join("---" for _ in COLUMNS) + " |"]
    for row in rows:
        if "diverged" in row:
            cells = [row["architecture"]] + ["diverged"] + ["-"] * (len(COLUMNS) - 2)
        else:
            cells = [_cell(key, row.get(key)) for key, _ in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path, steps: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    window = max(1, steps // 50)
    for row in rows:
        losses = row.get("train_loss_per_step") or []
        if not losses:
            continue
        # a running mean over `window` steps; single-batch losses are noisy
        smooth = [sum(losses[max(0, i - window + 1):i + 1]) / (i + 1 - max(0, i - window + 1))
                  for i in range(len(losses))]
        ax.plot(range(1, len(losses) + 1), smooth, label=row["architecture"])
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(f"training loss (label-smoothed CE; running mean of {window})")
    ax.set_title("number words EN->FR: same data, steps, batch tokens, lr")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    _, data = read_toml(CONFIG)
    train, batch = data["train"], data["data"]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                        help="optimizer steps for every architecture (default %(default)s; with "
                             "translate.toml's 2+2 layers and 1024 batch tokens the whole script "
                             "took 8 minutes with --threads 1 on 2 CPU cores shared with other "
                             "jobs, load average 2.4-4)")
    parser.add_argument("--batch-tokens", type=int, default=batch["batch_tokens"],
                        help="data.batch_tokens for every architecture (default: translate.toml's, "
                             "%(default)s)")
    parser.add_argument("--lr", type=float, default=train["lr"],
                        help="peak learning rate for every architecture (default: translate.toml's, "
                             "%(default)s)")
    parser.add_argument("--warmup", type=int, default=None,
                        help=f"warm-up steps (default: translate.toml's {train['warmup_steps']}, at most a "
                             "third of --steps)")
    parser.add_argument("--layers", type=int, default=data["model"]["encoder"]["layers"],
                        help="layers in each encoder and each decoder (default: translate.toml's "
                             "Transformer encoder's, %(default)s)")
    parser.add_argument("--eval-examples", type=int, default=train["eval_examples"],
                        help="valid examples decoded at the final evaluation (default %(default)s)")
    parser.add_argument("--seed", type=int, default=data["seed"], help="seed (default %(default)s)")
    parser.add_argument("--limit", type=int, default=0,
                        help="use only the first N pairs of each split (0: all; for quick checks)")
    parser.add_argument("--arch", action="append", choices=ARCHITECTURES,
                        help="architecture to run (repeatable; default: all four)")
    parser.add_argument("--out", type=Path, default=Path("runs/seed_experiment"),
                        help="output folder (default %(default)s)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads for the runs (default: torch's choice, all cores)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.layers < 1:
        parser.error("--steps and --layers must be at least 1")
    if args.warmup is None:
        args.warmup = min(train["warmup_steps"], args.steps // 3)
    args.arch = args.arch or list(ARCHITECTURES)
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the experiment; returns one row per architecture (what results.json holds)."""
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    base = base_config(write_slices(args.out, args.limit) if args.limit else None)
    manager = seqkit.make_plugin_manager()
    rows = []
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        for arch in args.arch:
            if not args.quiet:
                print(f"training {arch} ({args.steps} steps)", file=sys.stderr, flush=True)
            rows.append(run_one(arch, args, manager, base))
    finally:
        torch.set_num_threads(threads)
    text = table(rows)
    settings = {"steps": args.steps, "batch_tokens": args.batch_tokens, "lr": args.lr,
                "warmup_steps": args.warmup, "schedule": base["train"]["schedule"],
                "seed": args.seed, "d_model": base["model"]["d_model"],
                "layers": f"{args.layers} encoder + {args.layers} decoder",
                "eval_examples": args.eval_examples, "limit": args.limit or None,
                "threads": torch.get_num_threads() if not args.threads else args.threads,
                "config": str(CONFIG)}
    note = (f"{args.steps} steps each, batch_tokens {args.batch_tokens}, "
            f"lr {args.lr} ({base['train']['schedule']}, warm-up {args.warmup}), seed {args.seed}, "
            f"d_model {base['model']['d_model']}, {args.layers}+{args.layers} layers"
            + (f", first {args.limit} pairs of each split" if args.limit else "") + ".")
    (args.out / "results.md").write_text(f"{text}\n\n{note}\n", encoding="utf-8")
    summary = json.dumps({"settings": settings, "results": rows}, indent=1)
    (args.out / "results.json").write_text(summary + "\n", encoding="utf-8")
    plot(rows, args.out / "loss_curves.png", args.steps)
    print(text)
    print(f"\n{note}\nwritten: {args.out / 'results.md'}, results.json, loss_curves.png")
    return rows


if __name__ == "__main__":
    main()
