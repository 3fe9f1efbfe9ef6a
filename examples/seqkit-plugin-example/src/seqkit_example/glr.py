"""The ``glr`` decoder: a minimal gated linear recurrence, with single-head dot-product
cross-attention over the encoder memory (skipped without an encoder: a language model).

Per layer, on y = LayerNorm(x) (B, T, D):

    a_t = sigmoid(W_a y_t)    u_t = W_u y_t    h_t = a_t * h_{t-1} + (1 - a_t) * u_t

h_t is an affine function of h_{t-1}, so all h_t come out of a parallel scan with no loop over time
(see ``gated_recurrence``): training runs whole sequences at once, like a Transformer, while decoding
carries one state vector per layer, like an RNN. The layer's output W_o h_t (+ the attention context)
is added back to x.

Cache (every tensor batch-first, so the generic ``index_select`` reorder works)::

    state          (B, layers, D)     h after the last position seen, per layer
    memory_keys    (B, layers, S, D)  W_k memory per layer  } computed once in init_cache,
    memory_values  (B, layers, S, D)  W_v memory per layer  } with an encoder only
    memory_mask    (B, S) bool
"""

import math

import torch
import torch.nn.functional as F
from seqkit.interfaces import Decoder, EncoderOutput
from torch import Tensor, nn

from .options import GLRDecoderConfig, check_glr_config

__all__ = ["GLRDecoder", "GLRDecoderConfig", "GLRLayer", "gated_recurrence"]


def gated_recurrence(gate_logits: Tensor, values: Tensor, state: Tensor) -> Tensor:
    """Every h_t of h_t = a_t * h_{t-1} + (1 - a_t) * u_t at once, a_t = sigmoid(gate_logits_t).

    gate_logits, values: (B, T, D); state: (B, D) is h_{-1}. Returns h (B, T, D).

    Each step is an affine map h -> a_t h + b_t (b_t = (1 - a_t) u_t), and composing two affine maps
    gives another: (a2, b2) after (a1, b1) = (a2 a1, a2 b1 + b2). So a parallel prefix scan
    (Hillis-Steele) finds all h_t in ceil(log2 T) rounds of whole-tensor ops, with no loop over t:
    after the round of width w, position t holds the map of the 2w steps ending at t.

    Why not the closed form h_t = sum_s exp(L_t - L_s) (1 - a_s) u_s, L_t = sum_{r<=t} log a_r, with
    logcumsumexp? It never overflows, but L_t - L_s is a difference of two large fp32 sums, so every
    weight carries a relative error ~ |L_t| * 2^-24 (3e-5 at T = 64 with |u| ~ 3, against a float64
    loop), and incremental decoding (L restarts at each chunk) would drift from the full pass. Here
    every number is a product of gates in [0, 1] (it can only underflow, to a weight that is
    negligible anyway) or a convex combination of values, so the error stays at a few ulps for any T.
    The scan runs in fp32 whatever the autocast dtype: a bf16 state would lose the small updates.
    """
    dtype = values.dtype
    a = torch.sigmoid(gate_logits.float())  # (B, T, D) the decay of each step
    b = (1 - a) * values.float()  # (B, T, D) what each step adds
    # fold the initial state into the first step, so a map that reaches t = 0 is already h itself
    b = torch.cat([b[:, :1] + a[:, :1] * state.float().unsqueeze(1), b[:, 1:]], dim=1)
    width = 1
    while width < a.size(1):
        # compose each position's map with the one ending `width` steps earlier; positions
        # t < width have none: the zero-padded b leaves them as they are (their zeroed a only ever
        # multiplies zero padding in later rounds)
        earlier_a = F.pad(a[:, :-width], (0, 0, width, 0))  # (B, T, D)
        earlier_b = F.pad(b[:, :-width], (0, 0, width, 0))
        a, b = a * earlier_a, b + a * earlier_b
        width *= 2
    return b.to(dtype)


class GLRLayer(nn.Module):
    """x -> x + dropout(W_o h + attention(query W_q h, over the memory)), h the recurrence."""

    def __init__(self, d_model: int, dropout: float):
        super().__init__()
        self.ln = nn.LayerNorm(d_model)
        self.gate = nn.Linear(d_model, d_model)  # W_a
        self.value = nn.Linear(d_model, d_model)  # W_u
        self.out = nn.Linear(d_model, d_model)  # W_o
        # cross-attention; the memory's keys and values are what init_cache precomputes
        self.query = nn.Linear(d_model, d_model, bias=False)
        self.key = nn.Linear(d_model, d_model, bias=False)
        self.memory_value = nn.Linear(d_model, d_model, bias=False)
        self.scale = 1 / math.sqrt(d_model)
        self.dropout = nn.Dropout(dropout)

    def memory_kv(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values of the memory (B, S, D) each: once per source, not per step."""
        return self.key(memory), self.memory_value(memory)

    def forward(
        self, x: Tensor, state: Tensor, memory: tuple[Tensor, Tensor, Tensor] | None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """x: (B, T, D); state: (B, D) h before x; memory: (keys, values, mask) or None.
        Returns the new x, the state after x's last position, and attention weights (B, T, S)."""
        y = self.ln(x)
        gate_logits, values = self.gate(y), self.value(y)  # (B, T, D) each
        if x.size(1) == 1:  # one decoding step: the recurrence itself, cheaper than the scan
            a = torch.sigmoid(gate_logits)
            h = a * state.unsqueeze(1) + (1 - a) * values  # (B, 1, D)
        else:
            h = gated_recurrence(gate_logits, values, state)  # (B, T, D)
        out = self.out(h)
        weights = None
        if memory is not None:
            keys, memory_values, mask = memory  # (B, S, D), (B, S, D), (B, S)
            scores = self.query(h) @ keys.transpose(1, 2) * self.scale  # (B, T, S)
            weights = scores.masked_fill(~mask.unsqueeze(1), float("-inf")).softmax(dim=-1)
            out = out + weights @ memory_values  # (B, T, D)
        return x + self.dropout(out), h[:, -1], weights


class GLRDecoder(Decoder):
    """``GLRDecoder(config, d_model)`` is the registered factory; it validates the config.

    With ``record_attention`` set, ``attention_weights`` holds the last layer's cross-attention
    weights of the last forward: (B, T, S), zero on padded sources.
    """

    def __init__(self, config: GLRDecoderConfig, d_model: int):
        super().__init__()
        check_glr_config(config)  # again: fields may have been set after the config was made
        self.d_model = d_model
        self.layers = nn.ModuleList(GLRLayer(d_model, config.dropout) for _ in range(config.layers))
        self.ln_f = nn.LayerNorm(d_model)  # the residual stream grows with depth; the head wants unit scale
        self.record_attention = False
        self.attention_weights = None

    def forward(
        self, y: Tensor, enc: EncoderOutput | None, cache: dict | None = None
    ) -> tuple[Tensor, dict | None]:
        """y: (B, T, D), the whole target (no cache) or only the new positions (with a cache).
        With a cache, the memory's keys and values come from it; ``enc`` is not read again."""
        if cache is None:
            state = y.new_zeros(y.size(0), len(self.layers), self.d_model)  # (B, layers, D)
            memory = None
            if enc is not None:
                kv = [layer.memory_kv(enc.memory) for layer in self.layers]
                memory = [(keys, values, enc.mask) for keys, values in kv]
        else:
            state, memory = cache["state"], None
            has_memory = "memory_keys" in cache
            if (enc is not None) != has_memory:
                made = "with" if has_memory else "without"
                raise ValueError(f"this cache was made {made} an encoder output; pass enc accordingly")
            if has_memory:
                keys, values = cache["memory_keys"], cache["memory_values"]  # (B, layers, S, D)
                memory = [(keys[:, i], values[:, i], cache["memory_mask"]) for i in range(len(self.layers))]

        x, states, weights = y, [], None
        for i, layer in enumerate(self.layers):
            x, last, weights = layer(x, state[:, i], memory[i] if memory is not None else None)
            states.append(last)  # (B, D)
        if self.record_attention:
            self.attention_weights = weights
        hidden = self.ln_f(x)  # (B, T, D)
        if cache is None:
            return hidden, None
        return hidden, {**cache, "state": torch.stack(states, dim=1)}

    @torch.no_grad()
    def init_cache(self, enc: EncoderOutput | None, batch_size: int, max_len: int) -> dict:
        """Zero states, and the memory's keys and values computed once for the whole decode.
        (``max_len`` is unused: the state does not grow with the target.)"""
        weight = self.ln_f.weight  # device and dtype of the model
        cache = {"state": weight.new_zeros(batch_size, len(self.layers), self.d_model)}
        if enc is not None:
            if enc.memory.size(0) != batch_size:
                raise ValueError(f"batch_size {batch_size} but the memory has {enc.memory.size(0)} rows")
            kv = [layer.memory_kv(enc.memory) for layer in self.layers]
            cache["memory_keys"] = torch.stack([keys for keys, _ in kv], dim=1)  # (B, layers, S, D)
            cache["memory_values"] = torch.stack([values for _, values in kv], dim=1)
            cache["memory_mask"] = enc.mask  # (B, S)
        return cache
