"""Configuration of the Transformer encoder and decoder: the ``[model.encoder]`` and
``[model.decoder]`` tables when ``type = "transformer"``."""

from dataclasses import dataclass
from typing import Literal

from seqkit.errors import ConfigError

# Field types stay within what plugin configs may use: int, float, bool, str, Literal and
# Optional of those.


@dataclass
class TransformerEncoderConfig:
    layers: int = 6
    heads: int = 8
    ffn_size: int | None = None  # None means 4 * d_model
    dropout: float = 0.1  # on the embeddings and every residual branch
    attention_dropout: float = 0.0  # on the attention probabilities
    activation: Literal["gelu", "relu", "silu"] = "gelu"  # silu: Marian's "swish" (Opus-MT)
    norm: Literal["pre", "post"] = "pre"
    positions: Literal["sinusoidal", "learned"] = "sinusoidal"
    max_positions: int = 1024  # learned position table size; bound on sequence and cache length
    bias: bool = True  # biases of the linear layers


@dataclass
class TransformerDecoderConfig:
    layers: int = 6
    heads: int = 8
    ffn_size: int | None = None  # None means 4 * d_model
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation: Literal["gelu", "relu", "silu"] = "gelu"  # silu: Marian's "swish" (Opus-MT)
    norm: Literal["pre", "post"] = "pre"
    positions: Literal["sinusoidal", "learned"] = "sinusoidal"
    max_positions: int = 1024
    bias: bool = True
    # A decoder-only language model sets this to false: the layers then own no cross-attention
    # weights (unused parameters would stall DistributedDataParallel and bloat checkpoints).
    cross_attention: bool = True


def check_config(config, d_model: int) -> None:
    """Raise ConfigError naming the field when ``config`` cannot build a model of width d_model."""
    if d_model < 1:
        raise ConfigError(f"d_model must be positive, got {d_model}")
    if config.layers < 1:
        raise ConfigError(f"layers: must be at least 1, got {config.layers}", key="layers")
    if config.heads < 1:
        raise ConfigError(f"heads: must be at least 1, got {config.heads}", key="heads")
    if d_model % config.heads != 0:
        raise ConfigError(
            f"heads: {config.heads} does not divide d_model {d_model}", key="heads"
        )
    if config.ffn_size is not None and config.ffn_size < 1:
        raise ConfigError(f"ffn_size: must be at least 1, got {config.ffn_size}", key="ffn_size")
    for key in ("dropout", "attention_dropout"):
        value = getattr(config, key)
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{key}: must be in [0, 1), got {value}", key=key)
    choices = {"activation": ("gelu", "relu", "silu"), "norm": ("pre", "post"),
               "positions": ("sinusoidal", "learned")}
    for key, allowed in choices.items():
        value = getattr(config, key)
        if value not in allowed:
            raise ConfigError(f"{key}: must be one of {', '.join(allowed)}, got {value!r}", key=key)
    if config.max_positions < 1:
        raise ConfigError(
            f"max_positions: must be at least 1, got {config.max_positions}", key="max_positions"
        )
