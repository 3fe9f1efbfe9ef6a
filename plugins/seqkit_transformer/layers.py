"""One encoder layer and one decoder layer, in pre-norm or post-norm arrangement.

pre-norm:  x = x + sublayer(norm(x))   (a final LayerNorm follows the stack; stable without warmup)
post-norm: x = norm(x + sublayer(x))   (the original Transformer)
"""

from torch import Tensor, nn

from seqkit_transformer.attention import CrossAttention, SelfAttention


class MLP(nn.Module):
    def __init__(self, config, d_model: int):
        super().__init__()
        ffn_size = config.ffn_size or 4 * d_model
        self.fc = nn.Linear(d_model, ffn_size, bias=config.bias)
        self.activation = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}[config.activation]()
        self.proj = nn.Linear(ffn_size, d_model, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(self.activation(self.fc(x)))
        return self.dropout(x) if self.training else x


class EncoderLayer(nn.Module):
    def __init__(self, config, d_model: int):
        super().__init__()
        self.pre_norm = config.norm == "pre"
        self.ln_1 = nn.LayerNorm(d_model)
        self.attn = SelfAttention(config, d_model)
        self.ln_2 = nn.LayerNorm(d_model)
        self.mlp = MLP(config, d_model)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x: (B, S, D); mask: (B, 1, 1, S) bool, True on real keys."""
        if self.pre_norm:
            x = x + self.attn(self.ln_1(x), mask=mask)
            x = x + self.mlp(self.ln_2(x))
        else:
            x = self.ln_1(x + self.attn(x, mask=mask))
            x = self.ln_2(x + self.mlp(x))
        return x


class DecoderLayer(nn.Module):
    """Causal self-attention, cross-attention over the memory (when built and given), MLP."""

    def __init__(self, config, d_model: int):
        super().__init__()
        self.pre_norm = config.norm == "pre"
        self.ln_1 = nn.LayerNorm(d_model)
        self.attn = SelfAttention(config, d_model)
        self.ln_2 = nn.LayerNorm(d_model) if config.cross_attention else None
        self.cross = CrossAttention(config, d_model) if config.cross_attention else None
        self.ln_3 = nn.LayerNorm(d_model)
        self.mlp = MLP(config, d_model)

    def forward(
        self,
        x: Tensor,
        self_mask: Tensor | None,
        is_causal: bool,
        memory: tuple[Tensor, Tensor, Tensor] | None,
        cache: dict[str, Tensor] | None = None,
        length: int = 0,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """x: (B, T, D). ``self_mask``/``is_causal`` shape the self-attention (see the decoder);
        ``memory`` is (keys, values, mask) of the memory, None for a language model; ``cache`` and
        ``length`` as in SelfAttention. Returns x and the cross-attention weights (B, nh, T, S)
        when ``need_weights`` (else None)."""
        weights = None
        if self.pre_norm:
            x = x + self.attn(self.ln_1(x), self_mask, is_causal, cache, length)
            if memory is not None:
                y, weights = self.cross(self.ln_2(x), *memory, need_weights=need_weights)
                x = x + y
            x = x + self.mlp(self.ln_3(x))
        else:
            x = self.ln_1(x + self.attn(x, self_mask, is_causal, cache, length))
            if memory is not None:
                y, weights = self.cross(x, *memory, need_weights=need_weights)
                x = self.ln_2(x + y)
            x = self.ln_3(x + self.mlp(x))
        return x, weights
