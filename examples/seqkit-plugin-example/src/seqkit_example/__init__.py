"""seqkit-plugin-example: an encoder ``conv`` (stacked 1-D convolutions, see conv.py), a decoder
``glr`` (a gated linear recurrence run as a parallel scan, with cross-attention, see glr.py), a task
``vowels`` (how many vowels has a word, see vowels.py) and a backend ``plain_cpu`` (backend.py).

Light at import: seqkit imports this module to list plugins and commands, so it imports no torch.
Each factory is named as "module:attribute" and imported when first built; the config dataclasses
come from options.py, which imports no torch either.
"""

from seqkit import hookimpl

from .options import ConvEncoderConfig, GLRDecoderConfig, VowelsConfig


@hookimpl
def register_encoders(register):
    """conv: stacked 1-D convolutions with residual + LayerNorm."""
    register("conv", "seqkit_example.conv:ConvEncoder", ConvEncoderConfig)


@hookimpl
def register_decoders(register):
    """glr: a gated linear recurrence with dot-product cross-attention."""
    register("glr", "seqkit_example.glr:GLRDecoder", GLRDecoderConfig)


@hookimpl
def register_tasks(register):
    """vowels: a word -> how many vowels it has (a classifier; metric error_rate, lower is better)."""
    register("vowels", "seqkit_example.vowels:VowelsTask", VowelsConfig)


@hookimpl
def register_backends(register):
    """plain_cpu: the CPU, fp32 only, never picked by `auto`."""
    register("plain_cpu", "seqkit_example.backend:PlainCpuBackend")
