"""The distributed rule, checked: under ``--nproc`` DistributedDataParallel expects a gradient for
every parameter after each backward. A component is checked in each mode it is composed in (an
encoder in a classifier, a decoder as a language model, an encoder with a decoder in seq2seq): one
backward through a tiny composed model, then the names of parameters that got no gradient.

Such parameters are not an error for seqkit's trainer, which finds them once at the start and then
runs DistributedDataParallel with ``find_unused_parameters`` (see seqkit.distributed); a component
that leaves none unused avoids that per-step cost. So this check warns with the names, and fails
only when the backward itself fails or a gradient is not finite.
"""

from __future__ import annotations

import torch

from seqkit.config import Component, ModelConfig
from seqkit.distributed import unused_parameters
from seqkit.model import ModelShape, build_model
from seqkit.plugins import PluginManager, Registration

VOCAB = 11


class NoGradient(Exception):
    """Parameters that receive no gradient in a mode (a warning, not a failure)."""


def _model(kind: str, enc: Registration | None, dec: Registration | None) -> torch.nn.Module:
    from seqkit.testing import Unsupported, options

    torch.manual_seed(0)
    config = ModelConfig(encoder=Component(enc.name, options(enc)) if enc else None,
                         decoder=Component(dec.name, options(dec)) if dec else None,
                         d_model=16, embedding_dropout=0.0)
    shape = {"classifier": ModelShape("classifier", source_vocab=VOCAB, num_outputs=3),
             "language_model": ModelShape("language_model", target_vocab=VOCAB),
             "seq2seq": ModelShape("seq2seq", source_vocab=VOCAB, target_vocab=VOCAB)}[kind]
    manager = PluginManager.from_registrations([r for r in (enc, dec) if r is not None])
    try:
        return build_model(config, shape, manager).train()
    except Exception as exc:
        if kind == "language_model":
            raise Unsupported(f"decoder needs an encoder: {(str(exc).splitlines() or [''])[0]}") from None
        raise


def every_parameter_gets_a_gradient(kind: str, enc: Registration | None, dec: Registration | None) -> None:
    """One backward through a tiny ``kind`` model of these components: NoGradient names the
    parameters of the components that got none; AssertionError a non-finite gradient."""
    model = _model(kind, enc, dec)
    unused, bad = unused_parameters(model)
    mine = [name for name in unused if name.startswith(("encoder.", "decoder."))]
    assert not bad, f"non-finite gradient after one backward ({kind}): {', '.join(bad)}"
    if mine:
        shown = ", ".join(mine[:6]) + (f" and {len(mine) - 6} more" if len(mine) > 6 else "")
        raise NoGradient(f"{len(mine)} parameter(s) get no gradient as a {kind.replace('_', ' ')}: {shown}; "
                         "under --nproc the trainer then runs DistributedDataParallel with "
                         "find_unused_parameters (slower)")


__all__ = ["NoGradient", "every_parameter_gets_a_gradient", "unused_parameters"]
