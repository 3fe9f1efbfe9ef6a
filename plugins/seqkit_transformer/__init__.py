"""The Transformer encoder and decoder (Vaswani et al. 2017), registered as ``transformer``."""

from seqkit import hookimpl
from seqkit_transformer.config import TransformerDecoderConfig, TransformerEncoderConfig
from seqkit_transformer.decoder import TransformerDecoder
from seqkit_transformer.encoder import TransformerEncoder


@hookimpl
def register_encoders(register):
    register("transformer", TransformerEncoder, TransformerEncoderConfig)


@hookimpl
def register_decoders(register):
    register("transformer", TransformerDecoder, TransformerDecoderConfig)
