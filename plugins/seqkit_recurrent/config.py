"""Config dataclasses of the recurrent encoders and decoders (the ``[model.encoder]`` and
``[model.decoder]`` tables) and the checks their factories run before building anything.

A check raises ``ConfigError(message, key=field)``; the core prefixes the key path, so a message
reads as the rest of ``model.decoder.layers: ...``.
"""

# No ``from __future__ import annotations`` here: the core reads these field types to validate
# TOML tables, and real type objects serve it whether or not it resolves string annotations.
from dataclasses import dataclass
from typing import Literal

from seqkit.errors import ConfigError

NONLINEARITIES = ("tanh", "relu")
ATTENTIONS = ("none", "dot", "general", "additive")
BRIDGES = ("none", "copy", "linear")


@dataclass
class RecurrentEncoderConfig:
    """``[model.encoder]`` of the ``lstm`` and ``gru`` encoders."""

    layers: int = 1
    hidden_size: int | None = None  # None: d_model
    dropout: float = 0.0  # between stacked layers, in training only
    bidirectional: bool = False


@dataclass
class RNNEncoderConfig(RecurrentEncoderConfig):
    """``[model.encoder]`` of the ``rnn`` (Elman) encoder."""

    nonlinearity: Literal["tanh", "relu"] = "tanh"


@dataclass
class RecurrentDecoderConfig:
    """``[model.decoder]`` of the ``lstm`` and ``gru`` decoders."""

    layers: int = 1
    hidden_size: int | None = None  # None: d_model
    dropout: float = 0.0  # between stacked layers, in training only
    # none; dot / general: Luong, after the RNN; additive: Bahdanau, context fed into the RNN.
    # general by default, as in fairseq and OpenNMT-py: without attention or a bridge a decoder
    # never reads the source. A language model (no encoder) sets attention = "none".
    attention: Literal["none", "dot", "general", "additive"] = "general"
    # initial state: none = zeros; copy = the encoder's final state; linear = tanh(W state + b)
    bridge: Literal["none", "copy", "linear"] = "none"


@dataclass
class RNNDecoderConfig(RecurrentDecoderConfig):
    """``[model.decoder]`` of the ``rnn`` (Elman) decoder."""

    nonlinearity: Literal["tanh", "relu"] = "tanh"


# -- checks -------------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_choice(value: object, choices: tuple[str, ...], key: str) -> None:
    if value not in choices:
        options = ", ".join(repr(choice) for choice in choices)
        raise ConfigError(f"must be one of {options}, got {value!r}", key=key)


def _check_stack(config: RecurrentEncoderConfig | RecurrentDecoderConfig) -> None:
    """The fields encoders and decoders share: layers, hidden_size, dropout, nonlinearity."""
    if not _is_int(config.layers) or config.layers < 1:
        raise ConfigError(f"must be an integer >= 1, got {config.layers!r}", key="layers")
    if config.hidden_size is not None and (not _is_int(config.hidden_size) or config.hidden_size < 1):
        raise ConfigError(
            f"must be an integer >= 1 or absent (d_model), got {config.hidden_size!r}",
            key="hidden_size",
        )
    dropout = config.dropout
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ConfigError(f"must be a number in [0, 1), got {dropout!r}", key="dropout")
    if isinstance(config, (RNNEncoderConfig, RNNDecoderConfig)):
        _check_choice(config.nonlinearity, NONLINEARITIES, "nonlinearity")


def check_encoder_config(config: RecurrentEncoderConfig, d_model: int) -> None:
    """Raise ConfigError naming the first invalid field of an encoder config."""
    _check_stack(config)
    if not isinstance(config.bidirectional, bool):
        raise ConfigError(f"must be true or false, got {config.bidirectional!r}", key="bidirectional")


def check_decoder_config(config: RecurrentDecoderConfig, d_model: int) -> None:
    """Raise ConfigError naming the first invalid field of a decoder config."""
    _check_stack(config)
    _check_choice(config.attention, ATTENTIONS, "attention")
    _check_choice(config.bridge, BRIDGES, "bridge")
    hidden_size = d_model if config.hidden_size is None else config.hidden_size
    # a dot product needs queries and memory of one width; 'general' learns the map between them
    if config.attention == "dot" and hidden_size != d_model:
        raise ConfigError(
            f"attention 'dot' needs decoder hidden_size == d_model, got hidden_size={hidden_size} "
            f"and d_model={d_model}; use attention = 'general'",
            key="attention",
        )
    # the encoder state arrives projected to d_model, so copying it needs a d_model-wide decoder
    if config.bridge == "copy" and hidden_size != d_model:
        raise ConfigError(
            f"bridge 'copy' needs decoder hidden_size == d_model, got hidden_size={hidden_size} "
            f"and d_model={d_model}; use bridge = 'linear'",
            key="bridge",
        )
