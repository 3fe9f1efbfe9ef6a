"""The ``conv`` encoder: a stack of 1-D convolutions over the source, each wrapped in a residual
connection and a LayerNorm (Gehring et al. 2017, without their position embeddings).

Each output position sees ``layers * (kernel_size - 1) + 1`` source positions around it. Padding is
zeroed before every convolution, so a padded position looks exactly like the zeros a convolution
pads a sequence's ends with: extra padding never changes a real position's output.
"""

import torch.nn.functional as F
from seqkit.interfaces import Encoder, EncoderOutput
from torch import Tensor, nn

from .options import ACTIVATIONS, ConvEncoderConfig, check_conv_config

__all__ = ["ACTIVATIONS", "ConvBlock", "ConvEncoder", "ConvEncoderConfig"]



class ConvBlock(nn.Module):
    """x -> LayerNorm(x + dropout(act(conv(x with padding zeroed))))."""

    def __init__(self, d_model: int, kernel_size: int, activation: str, dropout: float):
        super().__init__()
        self.glu = activation == "glu"
        channels = 2 * d_model if self.glu else d_model  # GLU halves its input: value and gate
        self.conv = nn.Conv1d(d_model, channels, kernel_size, padding=kernel_size // 2)
        self.dropout = nn.Dropout(dropout)
        self.ln = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        # masked_fill, not a multiply: 0 * inf would let a non-finite pad value through
        h = x.masked_fill(~mask.unsqueeze(-1), 0.0)  # (B, S, D)
        h = self.conv(h.transpose(1, 2)).transpose(1, 2)  # Conv1d wants (B, C, S); back to (B, S, C)
        h = F.glu(h, dim=-1) if self.glu else F.gelu(h)  # (B, S, D)
        return self.ln(x + self.dropout(h))


class ConvEncoder(Encoder):
    """``ConvEncoder(config, d_model)`` is the registered factory. memory (B, S, D) is the last
    block's output, zero on padding; state is None (there is no final recurrent state to bridge)."""

    def __init__(self, config: ConvEncoderConfig, d_model: int):
        super().__init__()
        check_conv_config(config)  # again: fields may have been set after the config was made
        self.d_model = d_model
        self.blocks = nn.ModuleList(
            ConvBlock(d_model, config.kernel_size, config.activation, config.dropout)
            for _ in range(config.layers)
        )

    def forward(self, x: Tensor, mask: Tensor) -> EncoderOutput:
        """x: (B, S, D); mask: (B, S) bool, True on real positions."""
        for block in self.blocks:
            x = block(x, mask)  # (B, S, D)
        memory = x.masked_fill(~mask.unsqueeze(-1), 0.0)  # tidy: padding holds zeros, not leftovers
        return EncoderOutput(memory=memory, mask=mask, state=None)
