"""The Transformer decoder: causal self-attention, cross-attention over an encoder's memory
(skipped when there is no encoder: a decoder-only language model), and a key/value cache for
incremental decoding.

Cache layout (every tensor batch-first, so ``seqkit.interfaces.reorder_cache`` works unchanged)::

    {"length": int,                           # positions decoded so far
     "layers": [{"k": (B, nh, max_len, hs),   # self-attention keys/values, preallocated,
                 "v": (B, nh, max_len, hs)},  #   positions < length are valid
                ...one per layer],
     "memory_padded": bool,                   # False: no padding, cross-attention skips the mask
     "weights": StepWeights,                  # eval mode with plain modules: the step's weights,
                                              #   packed (decode_step.py); not tensors, never reordered
     "source": {                              # only with an encoder; one row per source:
         "memory_mask": (Bs, S) bool,         #   beams of a source share it (shares_source)
         "layers": [{"memory_k": (Bs, nh, S, hs),   # cross-attention keys/values of the
                     "memory_v": (Bs, nh, S, hs)},  #   memory, computed once in init_cache
                    ...one per layer]}}

B is the number of hypotheses, Bs of sources (equal until beam search groups B = Bs * beams,
consecutive); cross-attention then reads each source's keys and values once for all of its beams,
its beams' queries side by side as one source's positions.
"""

import math

import torch
from torch import Tensor, nn

from seqkit.interfaces import Cache, Decoder, EncoderOutput, map_tensors, reorder_cache
from seqkit_transformer.config import TransformerDecoderConfig, check_config
from seqkit_transformer.decode_step import cached_step, step_weights
from seqkit_transformer.layers import DecoderLayer
from seqkit_transformer.positions import SinusoidalPositions, make_positions


def chunk_causal_mask(length: int, T: int, device: torch.device) -> Tensor:
    """(T, length+T) bool: the new position i (absolute length+i) sees keys 0 .. length+i.

    SDPA's ``is_causal`` aligns the triangle top-left, which is only right when length == 0.
    """
    keys = torch.arange(length + T, device=device)
    queries = torch.arange(length, length + T, device=device)
    return keys[None, :] <= queries[:, None]


class TransformerDecoder(Decoder):
    """``TransformerDecoder(config, d_model)`` is the registered factory; it validates the config.

    With ``record_attention`` set, ``attention_weights`` holds the cross-attention weights of the
    last layer, averaged over heads, of the last forward: (B, T, S), zero on padded sources. (The
    last layer, as fairseq does for alignments: it is the one closest to the output.)
    """

    shares_source = True  # cache["source"]: cross-attention keys/values, one copy per source

    def __init__(self, config: TransformerDecoderConfig, d_model: int):
        super().__init__()
        check_config(config, d_model)
        self.config = config
        self.d_model = d_model
        self.heads = config.heads
        self.positions = make_positions(config.positions, d_model, config.max_positions)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(DecoderLayer(config, d_model) for _ in range(config.layers))
        self.ln_f = nn.LayerNorm(d_model) if config.norm == "pre" else None
        self.record_attention = False
        self.attention_weights = None

    def forward(
        self, y: Tensor, enc: EncoderOutput | None, cache: Cache | None = None
    ) -> tuple[Tensor, Cache | None]:
        """y: (B, T, D) the whole target (no cache) or only the new positions (with a cache).

        With a cache, the memory comes from the cache (its keys and values were computed by
        init_cache); ``enc`` is not read again.
        """
        if cache is None:
            return self._forward_full(y, enc), None
        return self._forward_cached(y, cache)

    def _forward_full(self, y: Tensor, enc: EncoderOutput | None) -> Tensor:
        self._check_encoder(enc)
        x = self.dropout(self.positions(y))  # (B, T, D)
        weights = None
        for i, layer in enumerate(self.layers):
            memory = None
            if enc is not None:
                memory = (*layer.cross.memory_kv(enc.memory), enc.mask)
            # is_causal without an explicit mask lets SDPA pick the flash kernel on CUDA
            x, weights = layer(
                x, self_mask=None, is_causal=True, memory=memory,
                need_weights=self._need_weights(i),
            )
        self._keep_weights(weights)
        return self.ln_f(x) if self.ln_f is not None else x

    def _forward_cached(self, y: Tensor, cache: Cache) -> tuple[Tensor, Cache]:
        T = y.size(1)
        length = cache["length"]
        first_k = cache["layers"][0]["k"]
        if length + T > first_k.size(2):
            raise ValueError(
                f"the cache holds {first_k.size(2)} positions; {length} used, {T} more given"
            )
        # The buffers are written in place, so the cache passed in and the one returned share
        # them. The usual loop (forward, reorder_cache -> fresh copies, forward, ...) is safe, and
        # the old cache's own positions (< length) are never rewritten; but advancing the SAME
        # cache twice would overwrite what the first continuation wrote. Each buffer remembers how
        # far it has been written; writing below that is refused rather than silently corrupting.
        written = getattr(first_k, "seqkit_written", 0)
        if written > length:
            raise RuntimeError(
                f"this cache (length {length}) was already advanced to {written} by an earlier "
                "forward that shares its buffers; to branch, copy it first with "
                "decoder.reorder_cache(cache, torch.arange(batch_size))"
            )
        first_k.seqkit_written = length + T

        x = self.positions(y, offset=length)  # (B, T, D)
        x = self.dropout(x) if self.training else x
        # one new position sees every cached key: no mask; a chunk needs the shifted triangle
        self_mask = None if T == 1 else chunk_causal_mask(length, T, y.device)  # (T, length+T)
        source = cache.get("source")
        mask = None if source is None or not cache["memory_padded"] else source["memory_mask"]
        step = cache.get("weights")  # StepWeights from init_cache: the plain-tensor step
        if step is not None and not self.training and not self.record_attention:
            return cached_step(step, x, cache, length, self_mask, mask), {**cache, "length": length + T}
        weights = None
        for i, (layer, layer_cache) in enumerate(zip(self.layers, cache["layers"], strict=True)):
            memory = None
            if source is not None:
                memory_cache = source["layers"][i]
                memory = (memory_cache["memory_k"], memory_cache["memory_v"], mask)
            x, weights = layer(
                x, self_mask=self_mask, is_causal=False, memory=memory,
                cache=layer_cache, length=length, need_weights=self._need_weights(i),
            )
        self._keep_weights(weights)
        x = self.ln_f(x) if self.ln_f is not None else x
        return x, {**cache, "length": length + T}

    def forward_static(self, y: Tensor, cache: Cache) -> tuple[Tensor, Cache]:
        """The cached step of compiled decoding, over a cache from ``init_static_cache``: y (B, T,
        D) the new positions. Written for torch.compile: every shape it reads is a tensor's (a
        symbol under dynamic shapes), the position is a tensor, the memory mask is always applied
        and nothing branches on a value, so one graph serves every position, padded and unpadded
        sources and greedy and beam search (the graph is still specialised on T == 1, single
        steps, against T > 1, a prefill). The caller keeps the length within the buffers (an index
        past them is not checked here)."""
        T = y.size(1)
        length = cache["length"]  # (B,) every row at the same position
        steps = length[:1] + torch.arange(T, device=y.device)  # (T,) positions of the new tokens
        x = self._positions_at(y, steps)
        keys = torch.arange(cache["layers"][0]["k"].size(2), device=y.device)
        self_mask = keys[None, :] <= steps[:, None]  # (T, max_len): written and not in the future
        source = cache.get("source")
        for i, (layer, layer_cache) in enumerate(zip(self.layers, cache["layers"], strict=True)):
            memory = None
            if source is not None:
                memory_cache = source["layers"][i]
                memory = (memory_cache["memory_k"], memory_cache["memory_v"], source["memory_mask"])
            x, _ = layer(x, self_mask=self_mask, is_causal=False, memory=memory,
                         cache=layer_cache, length=steps)
        x = self.ln_f(x) if self.ln_f is not None else x
        return x, {**cache, "length": length + T}

    def _positions_at(self, y: Tensor, steps: Tensor) -> Tensor:
        """y + the position encodings of positions ``steps`` (T,), a tensor (not an offset)."""
        if isinstance(self.positions, SinusoidalPositions):  # its table's formula, at these positions
            exponent = torch.arange(0, self.d_model, 2, device=y.device, dtype=torch.float32)
            inv_freq = torch.exp(exponent * (-math.log(10000.0) / self.d_model))
            angle = steps.to(torch.float32)[:, None] * inv_freq[None, :]
            table = torch.stack((angle.sin(), angle.cos()), dim=-1).flatten(1)[:, : self.d_model]
            return y + table.to(y.dtype)
        return y + self.positions.table(steps)  # learned: (T, D)

    @torch.no_grad()
    def init_static_cache(self, enc: EncoderOutput | None, batch_size: int, max_len: int) -> Cache:
        """The cache of ``forward_static``: ``init_cache``'s buffers, with ``"length"`` a tensor
        (B,) (every row the same; batch-first, so reordering keeps it) and the memory mask applied
        whether or not a source is padded (no ``"memory_padded"`` flag to specialise on)."""
        cache = self.init_cache(enc, batch_size, max_len)
        del cache["memory_padded"]
        cache.pop("weights", None)  # compiled code runs the modules
        source = cache.get("source")
        if source is not None:
            # fresh and contiguous, as every reorder leaves them: compiled code is specialised on
            # strides (and on whether a tensor was made in inference mode)
            source = map_tensors(lambda t: t.clone(memory_format=torch.contiguous_format), source)
            if source["memory_mask"].size(1) == 1:  # one source position: a second, masked, so
                # that a length of 1 is not a graph of its own (it weighs 0 after the softmax)
                source = map_tensors(lambda t: torch.cat([t, torch.zeros_like(t)], dim=t.dim() // 2),
                                     source)  # the mask (Bs, S) on dim 1, keys/values (Bs, nh, S, hs) on 2
            cache["source"] = source
        cache["length"] = torch.zeros(batch_size, dtype=torch.long, device=self.layers[0].ln_1.weight.device)
        return cache

    def reorder_cache(self, cache: Cache, index: Tensor) -> Cache:
        """Rows ``index`` of every tensor; of the self-attention buffers only the positions
        written so far are copied (a step of beam search copies half the buffers on average)."""
        moved = self.reorder_hypotheses(cache, index, None)
        if "source" in cache:
            moved["source"] = reorder_cache(cache["source"], index)
        return moved

    def reorder_hypotheses(self, cache: Cache, index: Tensor, sources: Tensor | None) -> Cache:
        """As the contract's (``source`` rows ``sources``, the rest rows ``index``), copying only
        the written positions of the self-attention buffers into fresh ones: the positions past
        ``length`` are never read before they are written. The static cache of compiled decoding
        reads whole buffers (under a mask that weights unwritten positions 0, which NaN garbage
        would still spoil): it is copied whole."""
        length = cache["length"]
        if not isinstance(length, int):
            return super().reorder_hypotheses(cache, index, sources)
        layers = [{name: _written_rows(buffer, index, length) for name, buffer in layer.items()}
                  for layer in cache["layers"]]
        moved = {**cache, "layers": layers}
        if sources is not None and "source" in cache:
            moved["source"] = reorder_cache(cache["source"], sources)
        return moved

    @torch.no_grad()
    def init_cache(self, enc: EncoderOutput | None, batch_size: int, max_len: int) -> Cache:
        """Preallocated self-attention buffers for ``max_len`` positions, and the memory's
        cross-attention keys/values, computed here once for the whole decode.

        The cache is for inference: forward writes its buffers in place, which autograd cannot
        backpropagate through (training uses the full pass).
        """
        self._check_encoder(enc)
        if max_len > self.config.max_positions:
            raise ValueError(
                f"max_len {max_len} exceeds max_positions {self.config.max_positions}"
            )
        if enc is not None and enc.memory.size(0) != batch_size:
            raise ValueError(
                f"batch_size {batch_size} but the memory has {enc.memory.size(0)} rows"
            )
        weight = self.layers[0].ln_1.weight  # device and dtype of the model
        shape = (batch_size, self.heads, max_len, self.d_model // self.heads)
        layers = [{"k": weight.new_zeros(shape), "v": weight.new_zeros(shape)} for _ in self.layers]
        cache = {"length": 0, "layers": layers, "memory_padded": False}
        step = step_weights(self)  # None: the module path (training, hooks, int8, ...)
        if step is not None:
            cache["weights"] = step
        if enc is not None:
            memory = []
            for layer in self.layers:
                k, v = layer.cross.memory_kv(enc.memory)
                memory.append({"memory_k": k, "memory_v": v})
            cache["source"] = {"memory_mask": enc.mask, "layers": memory}
            # decided once per source: unmasked attention is the faster kernel (a step at batch 1
            # is mostly fixed costs), and dropping rows from the batch never adds padding
            cache["memory_padded"] = not bool(enc.mask.all())
        return cache

    def _check_encoder(self, enc: EncoderOutput | None) -> None:
        if enc is not None and not self.config.cross_attention:
            raise ValueError(
                "built with cross_attention = false, this decoder cannot attend to an encoder"
            )

    def _need_weights(self, layer_index: int) -> bool:
        return self.record_attention and layer_index == len(self.layers) - 1

    def _keep_weights(self, weights: Tensor | None) -> None:
        """Store the last layer's cross-attention weights (None without a memory)."""
        if self.record_attention:
            self.attention_weights = weights.mean(dim=1) if weights is not None else None


def _written_rows(buffer: Tensor, index: Tensor, length: int) -> Tensor:
    """A fresh buffer like ``buffer`` (B, nh, max_len, hs) holding rows ``index`` of its first
    ``length`` positions; what lies past them is left unset."""
    moved = buffer.new_empty((index.numel(), *buffer.shape[1:]))
    torch.index_select(buffer[:, :, :length], 0, index, out=moved[:, :, :length])
    return moved
