"""RNN, LSTM and GRU decoders, with optional attention over the encoder memory.

Without attention, and with Luong's dot / general attention, the fused RNN runs over all target
positions at once and attention follows it: hidden_t = tanh(W [context_t; h_t]). Bahdanau's
additive attention scores the memory with the previous state and feeds the context into the RNN
input, so step t waits for step t-1: it runs as a Python loop over a stack of nn.*Cell modules.

Cache (every tensor batch first, so the generic index_select reorders it):
    h       layers x (B, H)  recurrent state after the last position seen, a tuple: a step makes
                             new tensors per layer, which a (B, layers, H) tensor would stack
    c       layers x (B, H)  LSTM cell state (lstm only)
    source: what depends on the source only, one row per source (shares_source: a source's
            beams share it), computed once in init_cache, only with attention:
        memory  (Bs, S, D)   the memory, zero on padded positions
        mask    (Bs, S)      the source mask
        floor   (Bs, 1, S)   0 on real positions, the lowest value on padding ("weights" only)
        keys    (Bs, S, H)   U m of additive attention (additive only)
    weights StepWeights      eval mode with plain modules: the single step's weights (decode_step.py);
                             not tensors, never reordered
B counts hypotheses, Bs sources: equal, or B = Bs * g with a source's g beams consecutive, whose
queries then attend as g * T positions of their source.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from seqkit.interfaces import Cache, Decoder, EncoderOutput

from .attention import Attention
from .bridge import Bridge
from .config import RecurrentDecoderConfig, RNNDecoderConfig, check_decoder_config
from .decode_step import cached_step, cell_step, cell_weights, run_cells, step_weights
from .encoder import recurrent_module

TorchState = Tensor | tuple[Tensor, Tensor]  # (layers, B, H), or (h, c) for an LSTM
CELLS = {"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}


class RecurrentDecoder(Decoder):
    shares_source = True  # cache["source"]: memory, mask and attention keys, one copy per source

    def __init__(
        self,
        cell: str,
        d_model: int,
        layers: int = 1,
        hidden_size: int | None = None,
        dropout: float = 0.0,
        attention: str = "none",
        bridge: str = "none",
        nonlinearity: str = "tanh",
    ):
        super().__init__()
        self.cell = cell
        self.d_model = d_model
        self.layers = layers
        self.hidden_size = H = d_model if hidden_size is None else hidden_size
        self.attention_kind = attention
        self.feeds_context = attention == "additive"
        if self.feeds_context:
            # Bahdanau's RNN reads [y_t; context_t] one step at a time. One-step calls of the fused
            # module cost ~1.6x the time of nn.*Cell calls on CPU (forward + backward), so the loop
            # runs a stack of cells, with the fused module's dropout between layers.
            options = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
            self.cells = nn.ModuleList(
                CELLS[cell](2 * d_model if layer == 0 else H, H, **options) for layer in range(layers)
            )
            self.dropout = nn.Dropout(dropout)
        else:
            # Luong's RNN reads y_t alone and runs fused over all positions; attention follows
            self.rnn = recurrent_module(cell, d_model, H, layers, dropout, nonlinearity=nonlinearity)
        self.bridge = Bridge(bridge, cell, d_model, layers, H)
        if attention == "none":
            self.attention = None
            self.output = nn.Linear(H, d_model) if H != d_model else nn.Identity()
        else:
            self.attention = Attention(attention, d_model, H)
            self.output = nn.Linear(d_model + H, d_model)  # W of tanh(W [context; h])

    # -- the Decoder contract ---------------------------------------------------------------------

    def init_cache(self, enc: EncoderOutput | None, batch_size: int, max_len: int) -> Cache:
        self._check_encoder(enc)
        state = self.bridge(enc, batch_size, like=self._parameter())  # h[, c]: (B, layers, H)
        cache: Cache = {name: tuple(value.unbind(1)) for name, value in state.items()}  # per layer
        if self.attention is not None:  # what the attention reads, once per source
            memory = self._memory(enc)  # (Bs, S, D)
            cache["source"] = {"memory": memory, "mask": enc.mask}
            if self.feeds_context:
                cache["source"]["keys"] = self.attention.keys(memory)  # (Bs, S, H)
        step = step_weights(self)  # None: the module path (training, hooks, int8, additive, ...)
        if step is not None:
            cache["weights"] = step
            if self.attention is not None:  # added to the scores: 0 on real positions
                lowest = torch.finfo(cache["source"]["memory"].dtype).min
                floor = torch.where(enc.mask, 0.0, lowest).to(cache["source"]["memory"].dtype)
                cache["source"]["floor"] = floor[:, None, :]  # (Bs, 1, S), once per source
        return cache

    def forward(
        self, y: Tensor, enc: EncoderOutput | None, cache: Cache | None = None
    ) -> tuple[Tensor, Cache | None]:
        """y (B, T, D) -> hidden (B, T, D); with a cache, y holds only the new positions."""
        step = cache.get("weights") if cache is not None else None  # from init_cache: enc checked
        if step is not None and y.size(1) == 1 and not self.training and not self.record_attention:
            hidden, state = cached_step(step, y, cache, cache.get("source"))
            return hidden, {**cache, **state}
        self._check_encoder(enc)
        memory = mask = keys = None
        if cache is None:
            state = self.bridge(enc, y.shape[0], like=self._parameter())
            if self.attention is not None:
                memory, mask = self._memory(enc), enc.mask  # (B, S, D), (B, S)
                keys = self.attention.keys(memory) if self.feeds_context else None
        else:
            state = {name: torch.stack(cache[name], dim=1) for name in self.bridge.names}  # (B, layers, H)
            if self.attention is not None:
                source = cache["source"]
                memory, mask, keys = source["memory"], source["mask"], source.get("keys")

        if self.feeds_context:
            outputs, contexts, weights, state = self._additive_loop(y, memory, mask, keys, state)
        else:
            if cache is not None and y.size(1) == 1 and y.device.type == "cpu" and not self.training \
                    and type(self.rnn) in _CELL_MODULES:  # not a quantized module: it has no plain weights
                outputs, state = self._cell_step(y, state)  # (B, 1, H)
            else:
                output, hx = self.rnn(y, self._to_torch(state))  # (B, T, H)
                outputs, state = output, self._from_torch(hx)
            if self.attention is not None:
                contexts, weights = self._attend(outputs, memory, mask, None)  # (B, T, D), (B, T, S)

        if self.attention is None:
            hidden = self.output(outputs)  # (B, T, D)
        else:
            hidden = torch.tanh(self.output(torch.cat([contexts, outputs], dim=-1)))  # (B, T, D)
            if self.record_attention:
                self.attention_weights = weights.detach()

        if cache is None:
            return hidden, None
        # a new dict: the caller's cache (and any beam that shares its tensors) stays as it was
        return hidden, {**cache, **{name: tuple(value.unbind(1)) for name, value in state.items()}}

    # -- pieces -----------------------------------------------------------------------------------

    def _additive_loop(
        self, y: Tensor, memory: Tensor, mask: Tensor, keys: Tensor, state: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor, Tensor | None, dict[str, Tensor]]:
        """Bahdanau: at step t, attend with the previous state's top layer, then run one step of
        the cell stack on [y_t; context_t]. The source side of the scores (keys) is computed before
        the loop, once per source."""
        hs = list(state["h"].unbind(1))  # layers x (B, H)
        cs = list(state["c"].unbind(1)) if self.cell == "lstm" else None
        outputs, contexts, weights = [], [], []
        for t in range(y.shape[1]):
            context, weight = self._attend(hs[-1][:, None], memory, mask, keys)  # (B, 1, D), (B, 1, S)
            layer_input = torch.cat([y[:, t], context[:, 0]], dim=-1)  # (B, 2D)
            for layer, cell in enumerate(self.cells):
                if layer > 0:
                    layer_input = self.dropout(layer_input)  # between layers, as nn.LSTM does
                if cs is None:
                    hs[layer] = cell(layer_input, hs[layer])  # (B, H)
                else:
                    hs[layer], cs[layer] = cell(layer_input, (hs[layer], cs[layer]))
                layer_input = hs[layer]
            outputs.append(hs[-1])
            contexts.append(context[:, 0])
            if self.record_attention:  # only kept when asked for
                weights.append(weight[:, 0])
        state = {"h": torch.stack(hs, dim=1)}  # (B, layers, H)
        if cs is not None:
            state["c"] = torch.stack(cs, dim=1)
        stacked_weights = torch.stack(weights, dim=1) if weights else None  # (B, T, S)
        return torch.stack(outputs, dim=1), torch.stack(contexts, dim=1), stacked_weights, state

    def _attend(self, query: Tensor, memory: Tensor, mask: Tensor, keys: Tensor | None
                ) -> tuple[Tensor, Tensor | None]:
        """Attention of queries (B, T, H) over memory (Bs, S, D): with B = Bs * g (a source's beams
        consecutive), the g beams' queries are g * T positions of their source, so the memory
        is read once per source. Returns context (B, T, D) and weights (B, T, S) or None."""
        B, T, _ = query.shape
        Bs = memory.size(0)
        if B != Bs:
            query = query.reshape(Bs, B // Bs * T, -1)  # (Bs, g*T, H): a view, beams consecutive
        context, weights = self.attention(query, memory, mask, keys, need_weights=self.record_attention)
        if B != Bs:
            context = context.reshape(B, T, -1)
            weights = weights.reshape(B, T, -1) if weights is not None else None
        return context, weights

    def _cell_step(self, y: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """One position through the stack with the fused module's own weights, one native cell per
        layer (torch.lstm_cell / gru_cell / rnn_tanh_cell / rnn_relu_cell), reading and writing
        the cache layout (B, layers, H) directly. On CPU nn.LSTM/GRU/RNN run oneDNN, whose setup
        costs ~0.24 ms per layer and call: for one step that is most of a decode step at batch 1
        (a cell: ~0.03 ms). Same arithmetic; the floats may differ from the fused kernel's in
        the last bits."""
        layers = {name: value.unbind(1) for name, value in state.items()}
        x, layers = run_cells(cell_step(self.cell, self.rnn), cell_weights(self.rnn), y[:, 0], layers)
        return x[:, None], {name: torch.stack(value, dim=1) for name, value in layers.items()}

    def _parameter(self) -> Tensor:
        """Any parameter: zero states take its device and dtype."""
        return next(self.parameters())

    def _check_encoder(self, enc: EncoderOutput | None) -> None:
        if enc is None and self.attention is not None:
            raise ValueError(
                f"attention '{self.attention_kind}' needs an encoder output, and there is none "
                "(a language model); use attention = 'none'"
            )

    @staticmethod
    def _memory(enc: EncoderOutput) -> Tensor:
        # padded positions of memory "hold anything"; zeros keep a stray inf/NaN there out of the
        # context (a zero weight times NaN is still NaN). torch.where, not masked_fill: the same
        # values, ~30% less time forward and backward with a broadcast mask on CPU
        return torch.where(enc.mask[:, :, None], enc.memory, 0.0)  # (B, S, D)

    def _to_torch(self, state: dict[str, Tensor]) -> TorchState:
        """Cache layout (B, layers, H) -> torch's (layers, B, H)."""
        h = state["h"].transpose(0, 1).contiguous()
        if self.cell == "lstm":
            return h, state["c"].transpose(0, 1).contiguous()
        return h

    def _from_torch(self, hx: TorchState) -> dict[str, Tensor]:
        """torch's (layers, B, H) -> cache layout (B, layers, H)."""
        if self.cell == "lstm":
            return {"h": hx[0].transpose(0, 1), "c": hx[1].transpose(0, 1)}
        return {"h": hx.transpose(0, 1)}


_CELL_MODULES = (nn.LSTM, nn.GRU, nn.RNN)


# -- factories (registered in __init__.py) ------------------------------------------------------


def build_decoder(cell: str, config: RecurrentDecoderConfig, d_model: int) -> RecurrentDecoder:
    check_decoder_config(config, d_model)
    return RecurrentDecoder(
        cell,
        d_model,
        layers=config.layers,
        hidden_size=config.hidden_size,
        dropout=float(config.dropout),
        attention=config.attention,
        bridge=config.bridge,
        nonlinearity=config.nonlinearity if isinstance(config, RNNDecoderConfig) else "tanh",
    )


# The registered factories, one per cell; seqkit_recurrent/__init__.py names them as
# "seqkit_recurrent.decoder:lstm" so that listing plugins does not import torch.
rnn = partial(build_decoder, "rnn")  # Elman, tanh or relu
lstm = partial(build_decoder, "lstm")
gru = partial(build_decoder, "gru")
