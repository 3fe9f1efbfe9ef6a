"""Position information added to the embedded sequence: fixed sinusoids or a learned table.

Both take an ``offset`` (a Python int) so that incremental decoding numbers the new positions
after the ones already in the cache.
"""

import math

import torch
from torch import Tensor, nn


class SinusoidalPositions(nn.Module):
    """The fixed sin/cos encoding of "Attention Is All You Need". Not a buffer (nothing lands in
    checkpoints, DDP has nothing to broadcast, any length works): computed once per device and
    dtype up to the longest length seen and sliced, which saves incremental decoding seven small
    ops per step. Compiled code computes it in the graph instead."""

    def __init__(self, d_model: int, max_positions: int):
        super().__init__()
        self.d_model = d_model
        self.max_positions = max_positions
        self._table: Tensor | None = None  # (N, D) positions 0 .. N-1

    def table(self, start: int, stop: int, device: torch.device) -> Tensor:
        """Encodings of positions start .. stop-1, (stop-start, D) float32."""
        position = torch.arange(start, stop, device=device, dtype=torch.float32)
        # frequencies 1 / 10000^(2i / D), one per sin/cos pair; an odd D drops the last cosine
        exponent = torch.arange(0, self.d_model, 2, device=device, dtype=torch.float32)
        inv_freq = torch.exp(exponent * (-math.log(10000.0) / self.d_model))
        angle = position[:, None] * inv_freq[None, :]  # (T, ceil(D/2))
        return torch.stack((angle.sin(), angle.cos()), dim=-1).flatten(1)[:, : self.d_model]

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        stop = offset + x.size(1)
        if torch.compiler.is_compiling():
            return x + self.table(offset, stop, x.device).to(x.dtype)
        table = self._table
        if table is None or table.size(0) < stop or table.device != x.device:
            # every element is computed exactly as table(offset, stop) would: same values
            table = self._table = self.table(0, max(stop, 256), x.device)
        return x + table[offset:stop].to(x.dtype)


class LearnedPositions(nn.Module):
    """A learned vector per position, up to ``max_positions``."""

    def __init__(self, d_model: int, max_positions: int):
        super().__init__()
        self.max_positions = max_positions
        self.table = nn.Embedding(max_positions, d_model)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        T = x.size(1)
        if offset + T > self.max_positions:
            raise ValueError(
                f"position {offset + T - 1} is past max_positions {self.max_positions}; "
                "raise max_positions in the config"
            )
        position = torch.arange(offset, offset + T, device=x.device)
        return x + self.table(position)  # (B, T, D) + (T, D)


def make_positions(kind: str, d_model: int, max_positions: int) -> nn.Module:
    if kind == "learned":
        return LearnedPositions(d_model, max_positions)
    return SinusoidalPositions(d_model, max_positions)
