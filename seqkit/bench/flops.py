"""FLOPs of one step, counted by torch.utils.flop_counter, and MFU.

torch's counter knows matmuls, convolutions and the CUDA attention kernels. On CPU three kinds of
op carry a model's FLOPs without a formula in torch's table; they get one here, counted the way
torch counts the others (2 FLOPs per multiply-add; matmuls only, no elementwise work):
  - the CPU flash-attention kernel behind scaled_dot_product_attention (forward and backward)
  - oneDNN's fused LSTM layer (mkldnn_rnn_layer), which nn.LSTM runs on CPU
  - the fused Transformer encoder layer torch.nn.TransformerEncoderLayer runs at inference
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count


def count_flops(step: Callable[[], Any]) -> int:
    """FLOPs of one call of ``step`` (forward and backward, where it runs one)."""
    with FlopCounterMode(display=False, custom_mapping=extra_flop_formulas()) as counter:
        step()
    return counter.get_total_flops()


def mfu(flops_per_step: int | None, seconds_per_step: float, peak_flops: float | None) -> float | None:
    """Model FLOPs utilisation: achieved FLOP/s over the device's peak FLOP/s; None when the
    FLOPs or the peak are unknown (CPU backends publish no peak)."""
    if not flops_per_step or not peak_flops or seconds_per_step <= 0:
        return None
    return flops_per_step / seconds_per_step / peak_flops


# Formulas receive the shapes of tensor arguments (torch's shape_wrapper) and other arguments as is.


def _cpu_sdpa(q, k, v, *args, **kwargs) -> int:
    return sdpa_flop_count(q, k, v)


def _cpu_sdpa_backward(grad_out, q, k, v, *args, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, q, k, v)


def _rnn_layer(x, w_ih, w_hh, *args, **kwargs) -> int:
    # x (T, B, I) or (B, T, I); w_ih (G*H, I), w_hh (G*H, H): both matmuls at every position
    return 2 * x[0] * x[1] * (w_ih[0] * w_ih[1] + w_hh[0] * w_hh[1])


def _rnn_layer_backward(x, w_ih, w_hh, *args, **kwargs) -> int:
    return 2 * _rnn_layer(x, w_ih, w_hh)  # gradients of the inputs and of the weights


def _encoder_layer(src, embed_dim, num_heads, qkv_w, qkv_b, proj_w, proj_b, use_gelu, norm_first,
                   eps, norm_w1, norm_b1, norm_w2, norm_b2, ffn_w1, ffn_b1, ffn_w2, ffn_b2,
                   *args, **kwargs) -> int:
    batch, length, width = src  # (B, L, D)
    weights = sum(w[0] * w[1] for w in (qkv_w, proj_w, ffn_w1, ffn_w2))
    return 2 * batch * length * weights + 4 * batch * length * length * width  # + q kᵀ and a v


def extra_flop_formulas() -> dict[Any, Callable[..., int]]:
    """Formulas for the ops above, for FlopCounterMode(custom_mapping=...)."""
    aten, table = torch.ops.aten, {}
    for name, formula in (("_scaled_dot_product_flash_attention_for_cpu", _cpu_sdpa),
                          ("_scaled_dot_product_flash_attention_for_cpu_backward",
                           _cpu_sdpa_backward),
                          ("mkldnn_rnn_layer", _rnn_layer),
                          ("mkldnn_rnn_layer_backward", _rnn_layer_backward),
                          ("_transformer_encoder_layer_fwd", _encoder_layer)):
        if hasattr(aten, name):
            table[getattr(aten, name)] = formula
    return table
