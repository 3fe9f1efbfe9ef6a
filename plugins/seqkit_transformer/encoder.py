"""The Transformer encoder: positions, a stack of self-attention layers, padding masked out."""

from torch import Tensor, nn

from seqkit.interfaces import Encoder, EncoderOutput
from seqkit_transformer.config import TransformerEncoderConfig, check_config
from seqkit_transformer.layers import EncoderLayer
from seqkit_transformer.positions import make_positions


class TransformerEncoder(Encoder):
    """``TransformerEncoder(config, d_model)`` is the registered factory; it checks the config."""

    def __init__(self, config: TransformerEncoderConfig, d_model: int):
        super().__init__()
        check_config(config, d_model)
        self.config = config
        self.d_model = d_model
        self.positions = make_positions(config.positions, d_model, config.max_positions)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(EncoderLayer(config, d_model) for _ in range(config.layers))
        # pre-norm leaves the residual stream unnormalised: one LayerNorm at the very end
        self.ln_f = nn.LayerNorm(d_model) if config.norm == "pre" else None

    def forward(self, x: Tensor, mask: Tensor) -> EncoderOutput:
        """x: (B, S, D) embedded source; mask: (B, S) bool, True on real positions."""
        x = self.dropout(self.positions(x))  # (B, S, D)
        # Keys at padded positions get no weight, so a real position never sees padding; padded
        # queries still attend to the real keys and give finite (unused) outputs.
        attn_mask = mask[:, None, None, :]  # (B, 1, 1, S), broadcast over heads and queries
        for layer in self.layers:
            x = layer(x, attn_mask)
        if self.ln_f is not None:
            x = self.ln_f(x)
        return EncoderOutput(memory=x, mask=mask, state=None)
