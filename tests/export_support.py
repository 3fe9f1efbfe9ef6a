"""What the export tests share: the config of a tiny post-norm Transformer on the numbers data
(trained once per session by the ``export_run`` fixture in conftest.py)."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "examples" / "data"


def config(**changes) -> dict:
    """A tiny post-norm Transformer translating number words, one shared vocabulary."""
    layer = {"name": "transformer", "layers": 2, "heads": 2, "ffn_size": 64, "norm": "post", "dropout": 0.0}
    base = {
        "seed": 1,
        "task": {"name": "translation", "train": str(DATA / "numbers.train.tsv"),
                 "valid": str(DATA / "numbers.valid.tsv"), "test": str(DATA / "numbers.test.tsv"),
                 "tokenizer": "bpe", "vocab_size": 200, "shared_vocab": True},
        "model": {"d_model": 32, "share_embeddings": True, "encoder": dict(layer), "decoder": dict(layer)},
        "data": {"max_source_len": 40, "max_target_len": 30},
        "train": {"steps": 150, "lr": 3e-3, "warmup_steps": 20, "eval_every": 150, "eval_examples": 10,
                  "log_every": 150},
    }
    for key, value in changes.items():
        *path, last = key.split("__")
        table = base
        for part in path:
            table = table[part]
        table[last] = value
    return base
