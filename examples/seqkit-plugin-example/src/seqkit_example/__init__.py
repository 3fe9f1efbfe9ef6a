"""seqkit-plugin-example: an encoder ``conv`` (stacked 1-D convolutions, see conv.py) and a decoder
``glr`` (a gated linear recurrence run as a parallel scan, with cross-attention, see glr.py)."""

from seqkit import hookimpl

from .conv import ConvEncoder, ConvEncoderConfig
from .glr import GLRDecoder, GLRDecoderConfig


@hookimpl
def register_encoders(register):
    """conv: stacked 1-D convolutions with residual + LayerNorm."""
    register("conv", ConvEncoder, ConvEncoderConfig)


@hookimpl
def register_decoders(register):
    """glr: a gated linear recurrence with dot-product cross-attention."""
    register("glr", GLRDecoder, GLRDecoderConfig)
