"""What the crash, interrupt and run-folder tests compare: a run folder's end state."""

from __future__ import annotations

from pathlib import Path

import torch

from seqkit import checkpoint as ckpt
from seqkit.run_folder import RunFolder

TIMING = ("tokens_per_s",)  # the only field of metrics.jsonl that differs between equal runs


def tiny(steps: int = 12, **train) -> dict:
    """A small seq2seq run (a second or two), dropout on so RNG state matters, 3 evaluations."""
    return {
        "seed": 5,
        "task": {"name": "reverse", "symbols": 6, "min_len": 2, "max_len": 5, "train_size": 48,
                 "valid_size": 8, "test_size": 0},
        "model": {"d_model": 16, "embedding_dropout": 0.1, "encoder": {"name": "gru", "dropout": 0.1},
                  "decoder": {"name": "transformer", "layers": 1, "heads": 2, "dropout": 0.1}},
        "data": {"batch_tokens": 48, "max_source_len": 8, "max_target_len": 8},
        "train": {"steps": steps, "lr": 3e-3, "warmup_steps": 2, "eval_every": 4, "log_every": 1,
                  "keep_last": 1, **train},
    }


def metrics(run: Path) -> list[dict]:
    """metrics.jsonl without its timing fields."""
    return [{k: v for k, v in record.items() if k not in TIMING} for record in RunFolder(run).read_metrics()]


def end_state(run: Path) -> dict:
    """Weights and trainer state of the latest checkpoint, best.safetensors, metrics.jsonl and the
    names of the files in the run folder."""
    folder = RunFolder(run)
    latest = folder.latest_checkpoint()
    weights, meta = ckpt.load_tensors(latest)
    trainer, info = ckpt.load_tensors(folder.trainer_path(latest))
    best, best_meta = ckpt.load_tensors(folder.best)
    return {"step": meta["step"], "weights": weights, "trainer": trainer, "progress": info["progress"],
            "best_step": best_meta["step"], "best": best, "metrics": metrics(run),
            "files": sorted(p.relative_to(run).as_posix() for p in run.rglob("*")
                            if p.is_file() and p.name != ".seqkit.lock")}


def assert_same_end_state(a: dict, b: dict) -> None:
    assert a["step"] == b["step"] and a["best_step"] == b["best_step"]
    assert a["files"] == b["files"]
    assert a["metrics"] == b["metrics"]
    assert a["progress"] == b["progress"]
    for key in ("weights", "trainer", "best"):
        assert a[key].keys() == b[key].keys(), key
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}: {name}"
