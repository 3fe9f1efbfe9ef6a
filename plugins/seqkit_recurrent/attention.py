"""Attention of a recurrent decoder over the encoder memory: one query per target position, one
context vector (a weighted sum of memory) back.

    dot       score(h, m) = h . m                  Luong; needs hidden_size == d_model
    general   score(h, m) = (W h) . m              Luong; W maps the query into memory's space
    additive  score(h, m) = v . tanh(W h + U m)    Bahdanau; U m is computed once per source
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Attention(nn.Module):
    def __init__(self, kind: str, d_model: int, hidden_size: int):
        super().__init__()
        self.kind = kind
        if kind == "general":
            # h^T W_a m with W_a applied to the query side: per step that costs H*D, where keys
            # W_a^T m would cost S*H*D per source (and a cache entry) for the same scores
            self.query = nn.Linear(hidden_size, d_model, bias=False)
        elif kind == "additive":
            self.query = nn.Linear(hidden_size, hidden_size, bias=False)
            self.key = nn.Linear(d_model, hidden_size)
            self.score = nn.Linear(hidden_size, 1, bias=False)  # v
        elif kind != "dot":
            raise ValueError(f"unknown attention {kind!r}")

    def keys(self, memory: Tensor) -> Tensor | None:
        """What depends on the source only, computed once per source: U m (B, S, H) for additive
        attention; None for dot and general, which score the memory itself."""
        return self.key(memory) if self.kind == "additive" else None

    def forward(
        self, query: Tensor, memory: Tensor, mask: Tensor, keys: Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """query (B, T, H), memory (B, S, D) zero on padded positions, mask (B, S) True on real
        positions, keys from ``keys(memory)``; returns context (B, T, D) and, with
        ``need_weights``, the weights (B, T, S), zero on padding (else None)."""
        if self.kind == "dot":
            scores = query @ memory.transpose(1, 2)  # (B, T, S)
        elif self.kind == "general":
            scores = self.query(query) @ memory.transpose(1, 2)  # (B, T, D) @ (B, D, S)
        else:
            if keys is None:
                keys = self.key(memory)
            energy = torch.tanh(self.query(query)[:, :, None, :] + keys[:, None, :, :])  # (B,T,S,H)
            scores = self.score(energy).squeeze(-1)  # (B, T, S)

        padding = ~mask[:, None, :]  # (B, 1, S)
        # the dtype's lowest finite value, not -inf: a source with no real position then gives
        # uniform weights (zeroed below where they are asked for) instead of NaN
        scores = scores.masked_fill(padding, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)  # (B, T, S)
        context = weights @ memory  # (B, T, D)
        if not need_weights:
            # Padded positions already weigh exactly 0 in a row with a real position (exp of the
            # lowest value underflows), and a row with none spreads its weight over zero memory,
            # so the context is the same without zeroing the weights; the broadcast masked_fill
            # that zeroes them cost ~1% of an LSTM training step on CPU (seqkit bench)
            return context, None
        return context, weights.masked_fill(padding, 0.0)
