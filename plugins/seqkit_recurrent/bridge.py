"""The decoder's initial recurrent state, from the encoder's final state (a "bridge").

    none    zeros; works with any encoder and with none (a language model)
    copy    the encoder state as it is: needs hidden_size == d_model and equal layer counts
    linear  tanh(W_l s + b_l) per decoder layer l, from the encoder's top layers

States are batch first, (B, layers, H), as the decoder cache keeps them. LSTM decoders get a cell
state as well: from an LSTM encoder's c when there is one; otherwise copy starts c at zero and
linear maps the encoder's h into c through its own Linear. Decoders that have no cell read an LSTM
encoder's h only.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seqkit.interfaces import EncoderOutput, RecurrentState


def split_state(state: RecurrentState) -> tuple[Tensor, Tensor | None]:
    """An encoder state as (h, c), each (B, layers, D); c is None for RNN / GRU encoders."""
    if isinstance(state, Tensor):
        return state, None
    if len(state) == 1:
        return state[0], None
    return state[0], state[1]


class Bridge(nn.Module):
    def __init__(self, kind: str, cell: str, d_model: int, layers: int, hidden_size: int):
        super().__init__()
        self.kind = kind
        self.layers = layers
        self.hidden_size = hidden_size
        self.names = ("h", "c") if cell == "lstm" else ("h",)  # the state's entries in the cache
        if kind == "linear":
            # one map per decoder layer and state entry: layers play different roles in a stack
            self.maps = nn.ModuleDict(
                {
                    name: nn.ModuleList(nn.Linear(d_model, hidden_size) for _ in range(layers))
                    for name in self.names
                }
            )
        elif kind not in ("none", "copy"):
            raise ValueError(f"unknown bridge {kind!r}")

    def forward(self, enc: EncoderOutput | None, batch_size: int, like: Tensor) -> dict[str, Tensor]:
        """The initial state {"h": (B, layers, H)[, "c": ...]}; ``like`` gives device and dtype."""
        if self.kind == "none":
            zeros = like.new_zeros(batch_size, self.layers, self.hidden_size)
            return {name: zeros for name in self.names}
        if enc is None or enc.state is None:
            missing = (
                "there is no encoder (a language model)"
                if enc is None
                else "this encoder's output has none (state=None, e.g. a Transformer encoder)"
            )
            raise ValueError(
                f"bridge '{self.kind}' needs the final state of a recurrent encoder, but "
                f"{missing}; use bridge = 'none'"
            )
        h, c = split_state(enc.state)  # (B, layers_enc, D) each
        if self.kind == "copy":
            return self._copy(h, c)
        state = {}
        for name in self.names:
            source = self._align(c if name == "c" and c is not None else h)  # (B, layers, D)
            maps = self.maps[name]
            state[name] = torch.stack(
                [torch.tanh(maps[layer](source[:, layer])) for layer in range(self.layers)], dim=1
            )  # (B, layers, H)
        return state

    def _copy(self, h: Tensor, c: Tensor | None) -> dict[str, Tensor]:
        if h.shape[1] != self.layers or h.shape[2] != self.hidden_size:
            raise ValueError(
                f"bridge 'copy' needs the encoder state to match the decoder's layers and "
                f"hidden_size: encoder state has {h.shape[1]} layers of size {h.shape[2]}, the "
                f"decoder {self.layers} layers of hidden_size {self.hidden_size}; "
                "use bridge = 'linear'"
            )
        state = {"h": h}
        if "c" in self.names:
            state["c"] = torch.zeros_like(h) if c is None else c
        return state

    def _align(self, state: Tensor) -> Tensor:
        """(B, layers_enc, D) -> (B, layers, D): the top decoder layer reads the top encoder layer,
        the one below it the layer below, and so on; when the decoder is deeper, its extra bottom
        layers all read the encoder's bottom layer."""
        offset = state.shape[1] - self.layers
        index = (torch.arange(self.layers, device=state.device) + offset).clamp(min=0)
        return state.index_select(1, index)
