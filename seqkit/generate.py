"""Decoding over the decoder cache contract. Greedy search, batched: finished rows leave the working
batch (their cache rows are dropped with ``reorder_cache``), so a long output does not slow the rest.
"""

from __future__ import annotations

import torch
from torch import Tensor

from seqkit.interfaces import BOS, EOS, EncoderOutput
from seqkit.model import SeqModel


@torch.inference_mode()
def greedy(model: SeqModel, source: Tensor | None, source_mask: Tensor | None, max_len: int,
           batch_size: int | None = None) -> list[list[int]]:
    """The most likely next token at every step until EOS or ``max_len`` new tokens; returns the
    token ids of each row without BOS and EOS. ``source`` is None for a language model, which
    then needs ``batch_size``."""
    enc: EncoderOutput | None = None
    if model.encoder is not None:
        enc = model.encode(source, source_mask)
        batch_size = source.size(0)
    device = next(model.parameters()).device
    cache = model.decoder.init_cache(enc, batch_size, max_len + 1)
    alive = torch.arange(batch_size, device=device)  # row of the original batch, per working row
    outputs: list[list[int]] = [[] for _ in range(batch_size)]
    step_input = torch.full((batch_size, 1), BOS, dtype=torch.long, device=device)
    for _ in range(max_len):
        logits, cache = model.decode(step_input, enc, cache)
        next_tokens = logits[:, -1].argmax(-1)  # (b,)
        done = next_tokens == EOS
        for row, token in zip(alive.tolist(), next_tokens.tolist(), strict=True):
            if token != EOS:
                outputs[row].append(token)
        if done.any():
            keep = (~done).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            cache = model.decoder.reorder_cache(cache, keep)
            enc = enc.index_select(keep) if enc is not None else None
            alive, next_tokens = alive[keep], next_tokens[keep]
        step_input = next_tokens[:, None]
    return outputs
