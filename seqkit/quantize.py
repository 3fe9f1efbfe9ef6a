"""int8 inference on the CPU: dynamic quantization of a trained model's linear and recurrent layers.

Weights are stored as int8 (one scale per tensor); each call quantizes its input on the fly and
multiplies in int8 (fbgemm / oneDNN kernels), then returns float32. What is quantized, and why the
rest is not:

    nn.Linear, nn.GRU, nn.LSTM, nn.*Cell   int8, in the encoder, the decoder and the output head
    embeddings, feature projections        float: a lookup multiplies nothing, and a projection
                                           of F features is a small F x D product (a tied output
                                           head gets its own int8 copy of the shared matrix)
    nn.RNN (Elman)                         float: torch has no dynamic int8 Elman RNN
    nn.MultiheadAttention (a plugin's)     float: it reads its projections' weights itself
    a subclass of those (a plugin's)       float: its own forward would be lost

A recurrent decoder's fused module is quantized too: its cached step runs the int8 module where
the float one would run native cells on the float weights. Measured against keeping it float
(greedy, one thread, general attention, ms per step at batch 1 / 32): LSTM d_model 128 0.49 /
1.65 against 0.75 / 1.90, d_model 512 1.26 / 2.17 against 2.26 / 5.30 (fp32: 2.91 / 9.68).

A part (encoder, decoder) whose layers are all quantized keeps an empty float parameter, so code
that takes its device and dtype from ``next(part.parameters())`` finds float32 on the CPU, as
the quantized layers want their inputs. After quantizing, the model runs a few positions (a padded
source, a whole target, cached steps): a plugin whose code cannot work with quantized layers
fails here, in one line naming it, not at the first real input.

torch marks ``torch.ao.quantization`` deprecated (the kernels are still there in torch 2.13); its
warnings are silenced here, where seqkit alone decides to use it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from seqkit.blame import exception_line
from seqkit.errors import ConfigError, SeqkitError

# what torch's dynamic quantization turns into int8 modules
QUANTIZABLE = (nn.Linear, nn.LSTM, nn.GRU, nn.LSTMCell, nn.GRUCell, nn.RNNCell)
ANCHOR = "int8_float_anchor"  # the empty float parameter of a part with no float layer left


@dataclass
class Int8Layers:
    """Which layers of a model run in int8 (``quantized``) and which stay float, and why
    (``kept_float``: module path -> reason). Paths as ``model.named_modules()`` names them."""

    quantized: list[str] = field(default_factory=list)
    kept_float: dict[str, str] = field(default_factory=dict)


def int8_engine() -> str:
    """The quantized engine torch uses on this CPU; a ConfigError when it has none."""
    engine = torch.backends.quantized.engine
    if engine in (None, "none"):
        raise ConfigError("precision: int8 needs torch's quantized CPU kernels (fbgemm, x86, onednn or "
                          "qnnpack), and this torch build has none; use fp32")
    return engine


def quantize_int8(model: nn.Module, who: dict[str, str] | None = None) -> Int8Layers:
    """Quantize ``model`` (a SeqModel on the CPU, in eval mode) in place for int8 inference and say
    which layers were quantized. ``who`` names each part's plugin for errors ("encoder" ->
    "plugin P, encoder 'x'"). Raises ConfigError: no int8 kernels, a model not on the CPU, a part
    whose code does not run with quantized layers."""
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ConfigError(f"precision: int8 inference runs on the CPU only; the model is on {device}")
    int8_engine()
    with warnings.catch_warnings():  # torch.ao.quantization and quantized tensors: deprecated
        warnings.simplefilter("ignore")
        try:
            from torch.ao.quantization import default_dynamic_qconfig as qconfig
            from torch.ao.quantization import quantization_mappings
        except ImportError:
            raise ConfigError(f"precision: int8 needs torch's dynamic quantization (torch.ao.quantization), "
                              f"which torch {torch.__version__} does not have; use fp32") from None
        mapping = quantization_mappings.get_default_dynamic_quant_module_mappings()
    layers = Int8Layers()
    swaps: list[str] = []
    for part in ("encoder", "decoder", "head"):
        module = getattr(model, part, None)
        if module is None:
            continue
        for name, child in module.named_modules(prefix=part):
            if _inside(name, swaps) or _inside(name, layers.kept_float):
                continue  # its parameters go with the module around it
            reason = _kept_float(child)
            if reason is not None:
                layers.kept_float[name] = reason
            elif isinstance(child, QUANTIZABLE):
                swaps.append(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in swaps:
            parent, _, attribute = name.rpartition(".")
            owner = model.get_submodule(parent)
            float_module = getattr(owner, attribute)
            float_module.qconfig = qconfig
            setattr(owner, attribute, mapping[type(float_module)].from_float(float_module))
            layers.quantized.append(name)
    for part in ("encoder", "decoder"):
        _anchor(getattr(model, part, None))
    _probe(model, who or {})
    return layers


def _kept_float(module: nn.Module) -> str | None:
    """Why ``module`` (and what it holds) stays float, or None."""
    if isinstance(module, nn.RNN):
        return "torch has no dynamic int8 Elman RNN (nn.RNN)"
    if isinstance(module, nn.MultiheadAttention):
        return "nn.MultiheadAttention reads its projections' weights itself"
    if isinstance(module, QUANTIZABLE) and type(module) not in QUANTIZABLE:
        return f"{type(module).__name__} is a subclass of a torch layer: its own forward is kept"
    return None


def _inside(name: str, outers) -> bool:
    """Whether module ``name`` lies inside one of ``outers`` (module paths)."""
    return any(name.startswith(f"{outer}.") for outer in outers)


def _anchor(part: nn.Module | None) -> None:
    """Give a part with no float parameter left an empty one (see the module docstring)."""
    if part is not None and next(part.parameters(), None) is None:
        part.register_parameter(ANCHOR, nn.Parameter(torch.empty(0), requires_grad=False))


@torch.inference_mode()
def _probe(model: nn.Module, who: dict[str, str]) -> None:
    """A padded source, a whole target and two cached steps through the quantized model."""
    part, enc = "encoder", None
    try:
        if model.encoder is not None:
            features = model.shape.source_features
            source = (torch.zeros(2, 3, features) if features
                      else torch.full((2, 3), model.shape.pad_id + 1 if model.shape.source_vocab > 1 else 0))
            mask = torch.tensor([[True, True, True], [True, False, False]])
            enc = model.encode(source, mask)
        if model.decoder is not None:
            part = "decoder"
            target = torch.zeros(2, 2, dtype=torch.long)
            model.decode(target, enc)
            cache = model.decoder.init_cache(enc, 2, 4)
            for _ in range(2):
                _, cache = model.decode(target[:, :1], enc, cache)
    except SeqkitError:
        raise
    except Exception as exc:
        name = who.get(part, part)
        raise ConfigError(f"precision: int8: the {part} ({name}) does not run with int8 layers: "
                          f"{exception_line(exc)}; use fp32") from None
