"""What the built-in tasks share: split files, text checks, target framing, generation metrics."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import sacrebleu
import torch
from torch import Tensor

from seqkit.errors import ConfigError, DataError
from seqkit.interfaces import BOS, EOS, PAD, Example
from seqkit.readers import is_pattern
from seqkit.tokenizer import Tokenizer
from seqkit_tasks.config import SPLITS

# -- configuration ------------------------------------------------------------------------------


# -- splits -------------------------------------------------------------------------------------


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def split_path(config: Any, split: str) -> Path:
    """The file (or file prefix) configured for ``split``; DataError when there is none."""
    check_split(split)
    path = getattr(config, split)
    if path is None:
        raise DataError(f"task.{split}: no file configured")
    return path


def split_files(config: Any, split: str, suffixes: tuple[str, ...] = ("",)) -> list[Path]:
    """The files of ``split``: its configured path, or, when the path's name is a glob pattern
    (``train-*.tsv``, ``part-0[0-4].tsv``), every file it matches, in sorted order: the shards of
    one split, read one after another. With ``suffixes`` (parallel files: ``(".en", ".fr")``) the
    path is a prefix and the pattern matches prefixes: each result is a prefix whose files with
    every suffix exist. A pattern that matches nothing is a DataError naming the key."""
    path = split_path(config, split)
    if not is_pattern(path.name):
        return [path]
    first = suffixes[0]
    found = sorted(p for p in path.parent.glob(path.name + first) if p.is_file()) \
        if path.parent.is_dir() else []
    prefixes = [p.with_name(p.name[:len(p.name) - len(first)]) if first else p for p in found]
    if not prefixes:
        raise DataError(f"task.{split}: no file matches {path}{first}")
    return prefixes


def chain(readers: Iterable[Iterator[Example]]) -> Iterator[Example]:
    """The examples of each reader in turn (each file is opened when its turn comes)."""
    for reader in readers:
        yield from reader


def write_samples(folder: Path, suffix: str, lines: list[str]) -> dict[str, Path]:
    """The same few lines as each split's file ``folder/<split><suffix>``, for ``sample_options``
    (the conformance suite's small working task): {"train": path, "valid": path, "test": path}."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split in SPLITS:
        paths[split] = folder / f"{split}{suffix}"
        paths[split].write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return paths


def configured_splits(config: Any) -> list[str]:
    """The splits with a file in the config, in the order train, valid, test."""
    return [split for split in SPLITS if getattr(config, split) is not None]


# -- examples -----------------------------------------------------------------------------------


def text_of(value: Any, where: str, what: str) -> str:
    """``value`` if it is text, else a DataError naming where it comes from."""
    if not isinstance(value, str):
        raise DataError(f"{where or '<input>'}: {what} must be text, got {type(value).__name__} {value!r}")
    return value


def token_tensor(ids: list[int]) -> Tensor:
    return torch.tensor(ids, dtype=torch.long)


def framed(ids: list[int]) -> Tensor:
    """A target sequence as the decoder learns it: [bos, ...ids, eos]."""
    return torch.tensor([BOS, *ids, EOS], dtype=torch.long)


def output_ids(output: Tensor | Iterable[int]) -> list[int]:
    """Token ids of a generated sequence, up to its first eos, without bos and padding."""
    ids = output.tolist() if isinstance(output, Tensor) else [int(i) for i in output]
    if EOS in ids:
        ids = ids[:ids.index(EOS)]
    return [i for i in ids if i not in (PAD, BOS)]


def train_tokenizer(config: Any, texts: Iterable[str]) -> Tokenizer:
    """A tokenizer of the kind, size and case the task's config asks for, with its real-text
    options (normalize, whitespace, user_tokens, byte_fallback); a bad option is a ConfigError
    naming ``task.<key>``."""
    try:
        return Tokenizer.train(config.tokenizer, texts, config.vocab_size, lowercase=config.lowercase,
                               normalize=config.normalize, whitespace=config.whitespace,
                               user_tokens=config.user_tokens, byte_fallback=config.byte_fallback)
    except ConfigError as exc:
        key = f"task.{exc.key}" if exc.key else "task"
        raise ConfigError(f"{key}: {exc}") from None


def token_strings(tokenizer: Tokenizer | None, ids: list[int]) -> list[str]:
    """What ``Task.token_strings`` shows: each id's vocabulary entry."""
    if tokenizer is None:
        return [str(i) for i in ids]
    return [tokenizer.id_to_token(i) or str(i) for i in ids]


def require(tokenizer: Tokenizer | None, task: str) -> Tokenizer:
    if tokenizer is None:
        raise RuntimeError(f"{task}: call fit() or load_state_dict() before encoding or decoding")
    return tokenizer


# -- metrics ------------------------------------------------------------------------------------


def exact_match(predictions: list[Any], references: list[Any]) -> float:
    """The fraction of predictions equal to their reference."""
    _check_lengths(predictions, references)
    if not references:
        return 0.0
    return sum(p == r for p, r in zip(predictions, references, strict=True)) / len(references)


def generation_metrics(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Exact match (a fraction), and corpus-level BLEU and chrF (0-100) through sacrebleu."""
    _check_lengths(predictions, references)
    if not references:
        return {}
    return {
        "exact_match": exact_match(predictions, references),
        "bleu": sacrebleu.corpus_bleu(predictions, [references]).score,
        "chrf": sacrebleu.corpus_chrf(predictions, [references]).score,
    }


def _check_lengths(predictions: list[Any], references: list[Any]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
