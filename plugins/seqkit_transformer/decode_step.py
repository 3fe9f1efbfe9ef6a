"""The decoder's cached step in eval mode as plain tensor operations over its weights.

A decode step at batch 1 is mostly fixed costs: the module path makes ~46 ``nn.Module`` calls a
step (each ~1.4 µs of hook checks and attribute lookups on CPU) around ~20 small GEMMs. Here the
same arithmetic runs as one function over a ``StepWeights`` gathered once per decode (in
``init_cache``), with every Linear's weight packed as (in, out) (``seqkit.packing``: the faster
GEMM for a few rows). The attention, layer-norm and activation calls are the module path's own, on
the same layouts; only the GEMMs' summation order differs (the last bits of the floats).

Used only where it computes exactly what the modules would: eval mode, no recorded attention, and
every module on the path plain (``nn.Linear``/``nn.LayerNorm``/the activation, no subclass, no
quantized module, no forward hook when the decode starts). Anything else takes the module path.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from seqkit.packing import is_plain, linear, packed
from seqkit_transformer.attention import CrossAttention, SelfAttention
from seqkit_transformer.layers import MLP, DecoderLayer

ACTIVATIONS = {nn.GELU: F.gelu, nn.ReLU: F.relu, nn.SiLU: F.silu}


class StepWeights:
    """Per layer the weights of the cached step, each Linear as ``(Wt, bias)``. Not a tensor
    container (the cache holds it under ``"weights"`` and reorders never touch it)."""

    def __init__(self, layers: list[dict], ln_f: tuple | None, pre_norm: bool, heads: int, activation):
        self.layers, self.ln_f, self.pre_norm = layers, ln_f, pre_norm
        self.heads, self.activation = heads, activation


def step_weights(decoder) -> StepWeights | None:
    """The decoder's ``StepWeights``, or None when the module path must run (see the module
    docstring). Packed weights are made once and kept until the weights change."""
    if decoder.training or decoder.record_attention:
        return None
    modules = [*decoder.layers.modules(), *([decoder.ln_f] if decoder.ln_f is not None else [])]
    if not all(is_plain(m, *_PLAIN) for m in modules):
        return None
    layers = []
    for layer in decoder.layers:
        weights = {"ln_1": _norm(layer.ln_1), "qkv": packed(layer.attn.qkv),
                   "proj": packed(layer.attn.proj), "ln_3": _norm(layer.ln_3),
                   "fc": packed(layer.mlp.fc), "out": packed(layer.mlp.proj)}
        if layer.cross is not None:
            weights.update(ln_2=_norm(layer.ln_2), q=packed(layer.cross.q),
                           cross_proj=packed(layer.cross.proj))
        layers.append(weights)
    activation = ACTIVATIONS[type(decoder.layers[0].mlp.activation)]
    ln_f = _norm(decoder.ln_f) if decoder.ln_f is not None else None
    return StepWeights(layers, ln_f, decoder.config.norm == "pre", decoder.heads, activation)


def cached_step(weights: StepWeights, x: Tensor, cache: dict, length: int, self_mask: Tensor | None,
                memory_mask: Tensor | None) -> Tensor:
    """x (B, T, D) the new positions (positions added) -> (B, T, D); writes their keys and values
    into ``cache`` at ``length`` as ``SelfAttention`` does."""
    B, T, D = x.shape
    nh = weights.heads
    hs = D // nh
    source = cache.get("source")
    h = x.reshape(B * T, D)
    for i, (w, layer_cache) in enumerate(zip(weights.layers, cache["layers"], strict=True)):
        # self-attention over the cache
        a = _layer_norm(h, w["ln_1"]) if weights.pre_norm else h
        q, k, v = linear(a, *w["qkv"]).view(B, T, 3 * D).split(D, dim=2)
        layer_cache["k"][:, :, length: length + T] = k.view(B, T, nh, hs).transpose(1, 2)
        layer_cache["v"][:, :, length: length + T] = v.view(B, T, nh, hs).transpose(1, 2)
        y = F.scaled_dot_product_attention(q.view(B, T, nh, hs).transpose(1, 2),
                                           layer_cache["k"][:, :, : length + T],
                                           layer_cache["v"][:, :, : length + T], attn_mask=self_mask)
        h = _residual(weights, h, linear(y.transpose(1, 2).reshape(B * T, D), *w["proj"]), w["ln_1"])
        if source is not None and "q" in w:  # cross-attention over the memory's keys and values
            memory = source["layers"][i]
            a = _layer_norm(h, w["ln_2"]) if weights.pre_norm else h
            y = _cross(linear(a, *w["q"]), memory["memory_k"], memory["memory_v"], memory_mask, B, T, nh, hs)
            h = _residual(weights, h, linear(y, *w["cross_proj"]), w["ln_2"])
        a = _layer_norm(h, w["ln_3"]) if weights.pre_norm else h
        y = linear(weights.activation(linear(a, *w["fc"])), *w["out"])
        h = _residual(weights, h, y, w["ln_3"])
    if weights.ln_f is not None:
        h = _layer_norm(h, weights.ln_f)
    return h.view(B, T, D)


def _cross(q: Tensor, k: Tensor, v: Tensor, memory_mask: Tensor | None, B: int, T: int, nh: int,
           hs: int) -> Tensor:
    """``CrossAttention.forward``'s attention from projected queries (B*T, D) -> (B*T, D): a
    source's g = B // Bs hypotheses attend as g*T positions of that source."""
    Bs = k.size(0)
    g = B // Bs
    if g == 1:
        q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
    else:
        q = q.view(Bs, g, T, nh, hs).permute(0, 3, 1, 2, 4).reshape(Bs, nh, g * T, hs)
    mask = None if memory_mask is None else memory_mask[:, None, None, :]  # (Bs, 1, 1, S)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    if g == 1:
        return y.transpose(1, 2).reshape(B * T, nh * hs)
    return y.view(Bs, nh, g, T, hs).permute(0, 2, 3, 1, 4).reshape(B * T, nh * hs)


def _residual(weights: StepWeights, h: Tensor, y: Tensor, norm: tuple) -> Tensor:
    """pre-norm: h + y; post-norm: norm(h + y)."""
    return h + y if weights.pre_norm else _layer_norm(h + y, norm)


def _layer_norm(h: Tensor, norm: tuple) -> Tensor:
    weight, bias, eps = norm
    return F.layer_norm(h, (h.size(-1),), weight, bias, eps)


def _norm(module: nn.LayerNorm) -> tuple:
    return module.weight, module.bias, module.eps


# the modules the step stands in for: exactly these classes (a subclass may compute otherwise)
_PLAIN = (nn.ModuleList, DecoderLayer, SelfAttention, CrossAttention, MLP, nn.Linear, nn.LayerNorm,
          nn.Dropout, *ACTIVATIONS)
