"""The Transformer encoder and decoder (Vaswani et al. 2017), registered as ``transformer``."""

from seqkit import hookimpl
from seqkit_transformer.config import TransformerDecoderConfig, TransformerEncoderConfig


@hookimpl
def register_encoders(register):
    register("transformer", "seqkit_transformer.encoder:TransformerEncoder", TransformerEncoderConfig)


@hookimpl
def register_decoders(register):
    register("transformer", "seqkit_transformer.decoder:TransformerDecoder", TransformerDecoderConfig)
