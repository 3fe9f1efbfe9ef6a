"""Compiled decoding: ``torch.compile`` of one decode step (target embedding, decoder, output head
on the last position) over a decoder's *static* cache, for ``SearchConfig(compile=True)``.

A decoder offers a static cache with two methods (the Transformer has them):

- ``init_static_cache(enc, batch_size, max_len) -> cache``: batch-first tensors only (so beam
  search and dropping finished rows reorder it as any cache, ``reorder_hypotheses`` included), the
  buffers preallocated for ``max_len`` positions;
- ``forward_static(y, cache) -> (hidden, cache)``: the step, written for tracing: the position a
  tensor in the cache, no Python branch on a value or on a flag of the cache.

Everything that varies from call to call (hypotheses as rows finish or beams expand, sources,
source length, buffer length, prompt length) is a tensor size, marked dynamic before each call
(sizes of 1 included: ``backed_size_oblivious``; no two sizes assumed equal because they happen to
be: ``use_duck_shape`` off), so the compiled step does not recompile across a mixed workload:
dynamo traces one graph, which inductor specialises into three at most (single steps, single
steps of one row, a prefill of several tokens). The earlier attempt
(``torch.compile(model.decode, dynamic=True)``) recompiled on the Python values in the cache and
gave up at torch's limit of 8, silently decoding eagerly from there; here each model's step has
a code object (and so a recompile budget) of its own, and reaching the limit is an error.

Eager decoding stays the default, and compiled decoding is for inference only (eval mode).
"""

from __future__ import annotations

import types
import weakref
from typing import Any

import torch
from torch import Tensor

from seqkit.errors import ConfigError
from seqkit.interfaces import Cache, EncoderOutput, iter_tensors, map_tensors

__all__ = ["CompiledStep", "compiled_step", "supports_static_cache"]


def supports_static_cache(decoder: Any) -> bool:
    """Whether ``decoder`` offers the static cache compiled decoding needs."""
    return callable(getattr(decoder, "init_static_cache", None)) and callable(
        getattr(decoder, "forward_static", None))


def _decode_step(model, tokens: Tensor, cache: Cache) -> tuple[Tensor, Cache]:
    """What is compiled: tokens (N, T) -> float32 logits (N, V) of the position after them."""
    hidden, cache = model.decoder.forward_static(model.target_embedding(tokens), cache)
    return model.head(hidden[:, -1]).float(), cache


def _mark(tensor: Tensor, *dims: int) -> None:
    """Mark ``dims`` of ``tensor`` dynamic, a size of 1 included (``backed_size_oblivious``)."""
    for dim in dims:
        torch._dynamo.mark_dynamic(tensor, dim)


class CompiledStep:
    """One model's compiled decode step. ``mode`` as ``torch.compile`` takes it (None; on CUDA
    ``"reduce-overhead"``, CUDA graphs); ``backend`` too (tests pass a counting one)."""

    def __init__(self, model, mode: str | None = None, backend: Any = "inductor"):
        name = type(model.decoder).__name__
        if not supports_static_cache(model.decoder):
            raise ConfigError(f"compile: the decoder {name} has no static cache for compiled decoding "
                              "(init_static_cache and forward_static; the Transformer has them)",
                              "compile")
        if any(type(module).__module__.startswith("torch.ao.nn.quantized") for module in model.modules()):
            raise ConfigError("compile: a model quantized to int8 cannot be compiled (torch.compile "
                              "does not trace dynamic quantization); decode it without compile", "compile")
        self.mode = mode
        self._model = weakref.ref(model)
        # a code object of its own: torch keeps compiled graphs, and counts recompiles against its
        # limit, per code object, so models of other architectures in the process do not use up
        # this one's (models of one architecture would otherwise share graphs)
        step = types.FunctionType(_decode_step.__code__.replace(), _decode_step.__globals__, "_decode_step")
        # fullgraph: a graph break would run part of the step eagerly without a word
        self._compiled = torch.compile(step, fullgraph=True, dynamic=False, mode=mode, backend=backend)
        self.calls = 0

    def init_cache(self, enc: EncoderOutput | None, batch_size: int, max_len: int) -> Cache:
        return self._model().decoder.init_static_cache(enc, batch_size, max_len)

    def __call__(self, tokens: Tensor, cache: Cache) -> tuple[Tensor, Cache]:
        """tokens (N, T) -> float32 logits (N, V), the cache advanced by T positions."""
        model = self._model()
        _mark(tokens, 0, 1)
        for layer in cache["layers"]:
            for buffer in layer.values():
                _mark(buffer, 0, 2)  # hypotheses, positions held
        _mark(cache["length"], 0)
        if "source" in cache:
            for tensor in iter_tensors(cache["source"]):
                _mark(tensor, 0, 1 if tensor.dim() == 2 else 2)  # sources; source positions
        self.calls += 1
        if self.mode == "reduce-overhead":  # CUDA graphs: the last step's outputs are consumed
            torch.compiler.cudagraph_mark_step_begin()
        try:
            with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True), \
                    torch.fx.experimental._config.patch(use_duck_shape=False, backed_size_oblivious=True):
                logits, new_cache = self._compiled(model, tokens, cache)
        except torch._dynamo.exc.FailOnRecompileLimitHit as exc:
            raise RuntimeError(f"compiled decoding recompiled the decode step up to torch's limit "
                               f"({torch._dynamo.config.recompile_limit}): {exc}") from None
        if self.mode == "reduce-overhead":
            # a CUDA graph's outputs live in its memory pool, which its next replay overwrites: keep
            # copies of what the search holds on to (the buffers written in place are the inputs')
            held = {id(t) for t in iter_tensors(cache)}
            logits = logits.clone()
            new_cache = map_tensors(lambda t: t if id(t) in held else t.clone(), new_cache)
        return logits, new_cache


_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def compiled_step(model, mode: str | None = None) -> CompiledStep:
    """The compiled step of ``model``, made on first use and kept while the model lives. ``mode``
    None picks CUDA graphs (``"reduce-overhead"``) on a CUDA device, the default mode elsewhere."""
    if mode is None:
        device = next(model.parameters()).device
        mode = "reduce-overhead" if device.type == "cuda" else "default"
    step = _STEPS.get(model)
    if step is None or step.mode != mode:
        step = _STEPS[model] = CompiledStep(model, mode=mode)
    return step
