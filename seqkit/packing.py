"""Linear weights laid out for decoding: ``W`` transposed and contiguous, (in, out).

``nn.Linear`` keeps ``W`` as (out, in) and computes ``x @ W.T``. For the few rows of a decode step
the GEMM over the contiguous transpose is the faster one on CPU (oneDNN/MKL): measured on a 2-core
Intel Xeon, one thread, ``torch.addmm(b, x, Wt)`` against ``F.linear(x, W, b)``: 8.2 vs 12.5 µs
(256 -> 768, one row), 72.7 vs 95.2 µs (32 rows), 925 vs 1,222 µs for a 256 -> 8,000 vocabulary
head at 32 rows. The products equal ``F.linear``'s up to the GEMM's summation order (the last bits).

A packed copy is made once and kept on its module (not a parameter or buffer: state dicts, ``.to``
and DDP never see it) until the weight changes (its version counter or storage), so a model that
decodes again and again pays for it once; ``release`` drops the copies (``SeqModel.train()`` does:
they exist while a model decodes in eval mode, and cost as much memory as the weights they copy).
Only plain modules qualify: a subclass, an int8 module (no float ``weight``) or a module with
forward hooks keeps its own call. A weight made under ``torch.inference_mode`` has no version
counter: it is used as it is (its transpose as a view), never copied.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules import module as _module

_PACKED = "_seqkit_packed"  # the attribute on the module: ((version, storage, dtype, device), Wt)


def is_plain(module: nn.Module, *kinds: type) -> bool:
    """``module`` is exactly one of ``kinds`` (no subclass) and no forward hook would run on it."""
    return (type(module) in kinds and not module._forward_hooks and not module._forward_pre_hooks
            and not _module._global_forward_hooks and not _module._global_forward_pre_hooks)


def packed_weight(linear: nn.Linear) -> Tensor:
    """``linear.weight`` as (in, out), contiguous: the same numbers, made again only when they change."""
    weight = linear.weight
    if weight.is_inference():  # made under inference_mode: no version counter tells a change
        return weight.t()  # so no copy: the module's own layout, always current
    key = (weight._version, weight.data_ptr(), weight.dtype, weight.device)
    held = linear.__dict__.get(_PACKED)
    if held is None or held[0] != key:
        held = (key, weight.detach().t().contiguous())
        linear.__dict__[_PACKED] = held
    return held[1]


def packed(linear: nn.Linear) -> tuple[Tensor, Tensor | None]:
    """``(packed_weight(linear), linear.bias)``: the arguments ``linear`` after ``x`` takes."""
    return packed_weight(linear), linear.bias


def linear(x: Tensor, weight_t: Tensor, bias: Tensor | None) -> Tensor:
    """x (N, in) @ weight_t (in, out) + bias: ``F.linear`` over a packed weight."""
    return torch.addmm(bias, x, weight_t) if bias is not None else torch.mm(x, weight_t)


def release(model: nn.Module) -> None:
    """Drop every packed copy held by ``model``'s modules."""
    for module in model.modules():
        module.__dict__.pop(_PACKED, None)
