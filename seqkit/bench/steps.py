"""What ``seqkit bench`` times: one step of a model on a fixed batch. seqkit's model and the raw
baseline run the very same step code, so that only the models differ."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqkit.interfaces import PAD, Backend

FIRST_TOKEN = 4  # random tokens avoid the special ids (pad, bos, eos, unk)


@dataclass
class Batch:
    """Random tokens of one fixed (B, L), without padding; the same for every implementation."""

    source: Tensor  # (B, L) int64
    mask: Tensor  # (B, L) bool, all True
    target: Tensor  # (B, L) int64, the decoder's input
    labels: Tensor  # (B, L) int64

    @classmethod
    def random(cls, batch_size: int, length: int, vocab: int, device: torch.device,
               generator: torch.Generator) -> Batch:
        def tokens() -> Tensor:
            return torch.randint(FIRST_TOKEN, vocab, (batch_size, length), generator=generator)

        source, target, labels = tokens().to(device), tokens().to(device), tokens().to(device)
        return cls(source, torch.ones_like(source, dtype=torch.bool), target, labels)


def train_step(model: nn.Module, forward: Callable[..., Tensor], batch: Batch, backend: Backend,
               precision: str) -> Callable[[], None]:
    """One training step of ``model``: the same code for seqkit's model and the baseline."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98))

    def step() -> None:
        with backend.autocast(precision):
            logits = forward(batch.source, batch.mask, batch.target)  # (B, T, V)
        loss = F.cross_entropy(logits.float().flatten(0, 1), batch.labels.flatten(),
                               ignore_index=PAD)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def encode_step(encode: Callable[..., Any], batch: Batch, backend: Backend,
                precision: str) -> Callable[[], None]:
    """One forward of the encoder, in inference mode."""

    def step() -> None:
        with torch.inference_mode(), backend.autocast(precision):
            encode(batch.source, batch.mask)

    return step


class GenerateStep:
    """seqkit.generate over the batch's sources: exactly L new tokens per row (end of sequence is
    banned before L and forced after), so every variant decodes the same number of tokens."""

    def __init__(self, model: nn.Module, batch: Batch, backend: Backend, precision: str, **search):
        from seqkit.generate import SearchConfig

        self.model, self.batch, self.backend, self.precision = model, batch, backend, precision
        length = batch.source.shape[1]
        self.config = SearchConfig(max_len=length, min_len=length, **search)
        self.tokens = batch.source.shape[0] * length

    def __call__(self) -> None:
        from seqkit.generate import generate

        with self.backend.autocast(self.precision):
            generate(self.model, self.batch.source, self.batch.mask, self.config)


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and ("out of memory" in str(exc)
                                           or "can't allocate memory" in str(exc)))


def timed(step: Callable[[], None], backend: Backend) -> float:
    """Seconds of one call of ``step``, from one device synchronization to the next."""
    backend.synchronize()
    start = time.perf_counter()
    step()
    backend.synchronize()
    return time.perf_counter() - start
