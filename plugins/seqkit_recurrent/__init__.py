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


@hookimpl
def register_encoders(register):
    """rnn, lstm and gru encoders."""
    register("rnn", "seqkit_recurrent.encoder:rnn", RNNEncoderConfig)  # Elman, tanh or relu
    register("lstm", "seqkit_recurrent.encoder:lstm", RecurrentEncoderConfig)  # state is (h, c)
    register("gru", "seqkit_recurrent.encoder:gru", RecurrentEncoderConfig)


@hookimpl
def register_decoders(register):
    """rnn, lstm and gru decoders."""
    register("rnn", "seqkit_recurrent.decoder:rnn", RNNDecoderConfig)
    register("lstm", "seqkit_recurrent.decoder:lstm", RecurrentDecoderConfig)
    register("gru", "seqkit_recurrent.decoder:gru", RecurrentDecoderConfig)
