"""The recurrent decoder's cached single step in eval mode as plain tensor operations.

A step at batch 1 is a few small GEMMs among many fixed costs: module calls (~1.4 µs each on
CPU), the fused module's weights looked up again, the padding mask inverted again. Here the
step runs one native cell per layer (as ``RecurrentDecoder._cell_step``) and Luong attention over
``StepWeights`` gathered once per decode (in ``init_cache``), the attention's and the output's
Linear weights packed as (in, out) (``seqkit.packing``). The cells, the attention products and the
softmax are the module path's own calls; only the packed GEMMs sum in another order.

Used only where it computes exactly what the modules would: eval mode, one position, no recorded
attention, Luong (dot / general) or no attention, and every module on the path plain (the exact
classes, no int8 module, no forward hook when the decode starts). Anything else takes the module
path (Bahdanau's additive attention always does).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from seqkit.packing import is_plain, linear, packed

from .attention import Attention

CELL_STEPS = {"lstm": torch.lstm_cell, "gru": torch.gru_cell, "rnn_tanh": torch.rnn_tanh_cell,
              "rnn_relu": torch.rnn_relu_cell}
_PLAIN = (nn.LSTM, nn.GRU, nn.RNN, Attention, nn.Linear, nn.Identity)


class StepWeights:
    """The weights of the step: per layer the cell's (weight_ih, weight_hh, bias_ih, bias_hh), the
    attention's query and the output as ``(Wt, bias)`` (None where absent). Not a tensor
    container: the cache holds it under ``"weights"`` and reorders never touch it."""

    def __init__(self, cell, layers: list[list[Tensor]], attention: str, query, output):
        self.cell, self.layers, self.attention = cell, layers, attention
        self.query, self.output = query, output


def step_weights(decoder) -> StepWeights | None:
    """The decoder's ``StepWeights``, or None when the module path must run."""
    if decoder.training or decoder.record_attention or decoder.feeds_context:
        return None
    parts = [decoder.rnn, decoder.output, *([decoder.attention] if decoder.attention is not None else [])]
    if not all(is_plain(module, *_PLAIN) for part in parts for module in part.modules()):
        return None
    if next(decoder.rnn.parameters()).device.type != "cpu":  # cuDNN runs the fused module well
        return None
    attention = decoder.attention.kind if decoder.attention is not None else "none"
    query = packed(decoder.attention.query) if attention == "general" else None
    output = packed(decoder.output) if isinstance(decoder.output, nn.Linear) else None
    return StepWeights(cell_step(decoder.cell, decoder.rnn), cell_weights(decoder.rnn), attention, query,
                       output)


def cached_step(weights: StepWeights, y: Tensor, state: dict[str, Tensor], source: dict | None
                ) -> tuple[Tensor, dict[str, Tensor]]:
    """y (B, 1, D) one position -> hidden (B, 1, D) and the new state {"h"[, "c"]}."""
    x, new = run_cells(weights.cell, weights.layers, y[:, 0], state)
    if weights.attention == "none":
        hidden = linear(x, *weights.output) if weights.output is not None else x
        return hidden[:, None], new
    memory, floor = source["memory"], source["floor"]  # (Bs, S, D), (Bs, 1, S)
    B, Bs = x.size(0), memory.size(0)
    query = linear(x, *weights.query) if weights.query is not None else x  # (B, D)
    # a source's B // Bs hypotheses (beams, consecutive) are queries of that source; the floor
    # added to padded positions' scores is the dtype's lowest value, which any score added to it
    # rounds back to (|score| < 1e31): Attention's masked_fill, in the same op as the product
    scores = torch.baddbmm(floor, query.view(Bs, B // Bs, -1), memory.transpose(1, 2))  # (Bs, g, S)
    context = torch.bmm(torch.softmax(scores, dim=-1), memory).view(B, -1)  # (B, D)
    hidden = torch.tanh(linear(torch.cat([context, x], dim=-1), *weights.output))  # (B, D)
    return hidden[:, None], new


def run_cells(cell, layers: list[list[Tensor]], x: Tensor, state: dict[str, Sequence[Tensor]]
              ) -> tuple[Tensor, dict[str, tuple[Tensor, ...]]]:
    """x (B, D) through one native cell per layer, from the state {"h"[, "c"]} (layers x (B, H),
    the cache's layout) to the new one; returns the top layer's output (B, H) and the state."""
    hs, cs = [], []
    h0, c0 = state["h"], state.get("c")
    for layer, cell_weights in enumerate(layers):
        if c0 is None:
            h = cell(x, h0[layer], *cell_weights)
        else:
            h, c = cell(x, (h0[layer], c0[layer]), *cell_weights)
            cs.append(c)
        hs.append(h)
        x = h  # no dropout between layers: inference only
    new = {"h": tuple(hs)}
    if cs:
        new["c"] = tuple(cs)
    return x, new


def cell_weights(rnn: nn.RNNBase) -> list[list[Tensor]]:
    """Per layer, the fused module's (weight_ih, weight_hh, bias_ih, bias_hh)."""
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    return [[getattr(rnn, f"{name}_l{layer}") for name in names] for layer in range(rnn.num_layers)]


def cell_step(cell: str, rnn: nn.RNNBase):
    """The native one-step function of a fused module's cell."""
    return CELL_STEPS[cell if cell != "rnn" else f"rnn_{rnn.nonlinearity}"]
