"""seqkit's recurrent encoders and decoders: ``rnn``, ``lstm`` and ``gru``.

Encoders run torch's fused modules over packed sequences; decoders add Luong (dot, general) or
Bahdanau (additive) attention and a bridge from the encoder's final state. See encoder.py and
decoder.py; the config fields are in config.py.
"""

from seqkit import hookimpl

from .config import (
    RecurrentDecoderConfig,
    RecurrentEncoderConfig,
    RNNDecoderConfig,
    RNNEncoderConfig,
)
from .decoder import gru_decoder, lstm_decoder, rnn_decoder
from .encoder import gru_encoder, lstm_encoder, rnn_encoder


@hookimpl
def register_encoders(register):
    """rnn, lstm and gru encoders."""
    register("rnn", rnn_encoder, RNNEncoderConfig)
    register("lstm", lstm_encoder, RecurrentEncoderConfig)
    register("gru", gru_encoder, RecurrentEncoderConfig)


@hookimpl
def register_decoders(register):
    """rnn, lstm and gru decoders."""
    register("rnn", rnn_decoder, RNNDecoderConfig)
    register("lstm", lstm_decoder, RecurrentDecoderConfig)
    register("gru", gru_decoder, RecurrentDecoderConfig)
