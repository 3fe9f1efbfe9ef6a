"""seqkit's recurrent encoders and decoders: ``rnn``, ``lstm`` and ``gru``.

Encoders run torch's fused modules over packed sequences; decoders add Luong (dot, general) or
Bahdanau (additive) attention and a bridge from the encoder's final state. See encoder.py and
decoder.py; the config fields are in config.py.
"""

from functools import partial

from seqkit import hookimpl

from .config import (
    RecurrentDecoderConfig,
    RecurrentEncoderConfig,
    RNNDecoderConfig,
    RNNEncoderConfig,
)
from .decoder import build_decoder
from .encoder import build_encoder


@hookimpl
def register_encoders(register):
    """rnn, lstm and gru encoders."""
    register("rnn", partial(build_encoder, "rnn"), RNNEncoderConfig)  # Elman, tanh or relu
    register("lstm", partial(build_encoder, "lstm"), RecurrentEncoderConfig)  # state is (h, c)
    register("gru", partial(build_encoder, "gru"), RecurrentEncoderConfig)


@hookimpl
def register_decoders(register):
    """rnn, lstm and gru decoders."""
    register("rnn", partial(build_decoder, "rnn"), RNNDecoderConfig)
    register("lstm", partial(build_decoder, "lstm"), RecurrentDecoderConfig)
    register("gru", partial(build_decoder, "gru"), RecurrentDecoderConfig)
