"""RNN, LSTM and GRU encoders: torch's fused modules, over packed sequences when a batch is padded,
so padding never reaches a real position's output, in either direction."""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqkit.interfaces import Encoder, EncoderOutput

from .config import RecurrentEncoderConfig, RNNEncoderConfig, check_encoder_config

RECURRENT_MODULES = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def recurrent_module(
    cell: str,
    input_size: int,
    hidden_size: int,
    layers: int,
    dropout: float,
    bidirectional: bool = False,
    nonlinearity: str = "tanh",
) -> nn.RNNBase:
    """A batch-first fused nn.RNN / nn.LSTM / nn.GRU."""
    options = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
    return RECURRENT_MODULES[cell](
        input_size,
        hidden_size,
        num_layers=layers,
        # torch applies dropout between layers only, and warns when there is no "between"
        dropout=dropout if layers > 1 else 0.0,
        bidirectional=bidirectional,
        batch_first=True,
        **options,
    )


def source_lengths(mask: Tensor) -> Tensor:
    """Lengths (B,) of a right-padded mask (B, S). Packing takes the real positions as a prefix of
    each row, so a mask with holes or left padding would silently run on padding: refuse it."""
    lengths = mask.sum(dim=1)  # (B,)
    prefix = torch.arange(mask.shape[1], device=mask.device)[None, :] < lengths[:, None]  # (B, S)
    if not torch.equal(prefix, mask.bool()):
        raise ValueError(
            "recurrent encoders need right-padded sources: each mask row must be True on a prefix "
            "of real positions and False after it"
        )
    return lengths


class RecurrentEncoder(Encoder):
    """Stacked (bi)directional RNN / LSTM / GRU. memory (B, S, D) is the top layer's output per
    position, zero on padding; state is the final state per layer, (B, layers, D), or (h, c)."""

    def __init__(
        self,
        cell: str,
        d_model: int,
        layers: int = 1,
        hidden_size: int | None = None,
        dropout: float = 0.0,
        bidirectional: bool = False,
        nonlinearity: str = "tanh",
    ):
        super().__init__()
        self.cell = cell
        self.d_model = d_model
        self.layers = layers
        self.hidden_size = d_model if hidden_size is None else hidden_size
        self.directions = 2 if bidirectional else 1
        self.rnn = recurrent_module(
            cell, d_model, self.hidden_size, layers, dropout, bidirectional, nonlinearity
        )
        # decoders read memory and state in d_model, so another width is projected (one Linear for
        # both: a state is the same kind of vector as an output, the last one of its direction)
        width = self.hidden_size * self.directions
        self.proj = nn.Linear(width, d_model) if width != d_model else nn.Identity()

    def forward(self, x: Tensor, mask: Tensor) -> EncoderOutput:
        if bool(mask.all()):
            # No row is padded (fixed-length batches, or one source at a time): the fused module
            # over the whole batch computes the same thing as the packed path below without
            # validating, sorting, packing and unpadding. `seqkit bench` on CPU: encode at batch 1
            # 1.3-1.5x faster, rnn and gru training steps 8-15% faster; bit-identical results.
            output, final = self.rnn(x)  # (B, S, dirs*H)
            state = tuple(self._batch_first(f) for f in final) if self.cell == "lstm" \
                else self._batch_first(final)
            return EncoderOutput(memory=self.proj(output), mask=mask, state=state)
        B, S, _ = x.shape
        lengths = source_lengths(mask)  # (B,)
        # packing needs lengths >= 1 on the CPU; an empty row runs on its first (padding) position
        # and is zeroed below
        packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        output, final = self.rnn(packed)  # final comes back in the batch's own order
        output, _ = pad_packed_sequence(output, batch_first=True, total_length=S)  # (B, S, dirs*H)
        memory = self.proj(output).masked_fill(~mask[:, :, None], 0.0)  # (B, S, D)

        empty = (lengths == 0)[:, None, None]  # (B, 1, 1)
        if self.cell == "lstm":
            h, c = final
            state = (self._batch_first(h, empty), self._batch_first(c, empty))
        else:
            state = self._batch_first(final, empty)
        return EncoderOutput(memory=memory, mask=mask, state=state)

    def _batch_first(self, final: Tensor, empty: Tensor | None = None) -> Tensor:
        """torch's final state (layers*dirs, B, H) -> (B, layers, D), both directions of a layer
        concatenated (forward first) before the projection; rows where ``empty`` are zeroed."""
        B = final.shape[1]
        final = final.view(self.layers, self.directions, B, self.hidden_size)
        final = final.permute(2, 0, 1, 3).reshape(B, self.layers, -1)  # (B, layers, dirs*H)
        final = self.proj(final)  # (B, layers, D)
        return final if empty is None else final.masked_fill(empty, 0.0)


# -- factories (registered in __init__.py) ------------------------------------------------------


def build_encoder(cell: str, config: RecurrentEncoderConfig, d_model: int) -> RecurrentEncoder:
    check_encoder_config(config, d_model)
    return RecurrentEncoder(
        cell,
        d_model,
        layers=config.layers,
        hidden_size=config.hidden_size,
        dropout=float(config.dropout),
        bidirectional=config.bidirectional,
        nonlinearity=config.nonlinearity if isinstance(config, RNNEncoderConfig) else "tanh",
    )


# The registered factories, one per cell; seqkit_recurrent/__init__.py names them as
# "seqkit_recurrent.encoder:lstm" so that listing plugins does not import torch.
rnn = partial(build_encoder, "rnn")  # Elman, tanh or relu
lstm = partial(build_encoder, "lstm")  # state is (h, c)
gru = partial(build_encoder, "gru")
