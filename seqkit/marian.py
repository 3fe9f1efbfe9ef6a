"""seqkit's Transformer and Hugging Face's MarianMT are one function under two sets of names.

This module holds the correspondence, in both directions, with no ``transformers`` import:

- options: post-norm layers without a final LayerNorm, sinusoidal positions, embeddings scaled by
  sqrt(d_model), biases, gelu/relu/silu. What Marian cannot express is a one-line ConfigError naming
  the seqkit option (or the Marian config key, on import).
- parameter names: seqkit fuses q, k, v (self-attention) and k, v (cross-attention) in one Linear;
  Marian keeps them apart.
- the residual stream's order: seqkit's sinusoids interleave sin and cos (sin0 cos0 sin1 cos1 ...),
  Marian's put every sin first and every cos after. Numbering the residual dimensions in the other
  order (every tensor that reads or writes the stream, permuted along that axis) turns one into the
  other exactly; Marian's position table is not in its files (it is recomputed on load), so the
  weights must move, not the table.
- vocabulary order: seqkit's ids 0..3 are <pad> <bos> <eos> <unk>; a Marian vocabulary has </s> at 0,
  <unk> at 1 and <pad> last, and starts decoding with <pad>. ``marian_order`` gives, for each seqkit id,
  the Marian id whose rows it takes (<bos> takes the decoder-start row: two ids, one vector).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from seqkit.errors import ConfigError

TRANSFORMER_PLUGIN, TRANSFORMER = "seqkit_transformer", "transformer"
ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "silu": "swish"}  # seqkit -> Marian's name
FROM_MARIAN_ACTIVATION = {"gelu": "gelu", "relu": "relu", "swish": "silu", "silu": "silu"}


def residual_order(d_model: int) -> Tensor:
    """For each Marian residual dimension, the seqkit dimension it holds: the even (sin) dimensions,
    then the odd (cos) ones."""
    return torch.cat([torch.arange(0, d_model, 2), torch.arange(1, d_model, 2)])


# -- options ------------------------------------------------------------------------------------


def transformer_parts(config, components: dict, shape, engine: str, activations) -> dict:
    """The encoder's and decoder's options of a seqkit run that ``engine`` (MarianMT, CTranslate2)
    can hold as its Transformer: a translation model whose encoder and decoder are the built-in
    Transformer, with an activation in ``activations`` and cross-attention; else a ConfigError
    naming the first option it cannot."""
    if shape.kind != "seq2seq" or shape.source_features:
        raise ConfigError(f"task {config.task.name!r}: a {shape.kind} model with "
                          f"{'feature' if shape.source_features else 'token'} sources cannot be a "
                          f"{engine} model (a translation model: token sources and targets)")
    parts = {}
    for part in ("encoder", "decoder"):
        info = components.get(part) or {}
        if (info.get("plugin"), info.get("name")) != (TRANSFORMER_PLUGIN, TRANSFORMER):
            raise ConfigError(f"model.{part}: {info.get('name')!r} from plugin {info.get('plugin')} "
                              f"cannot be a {engine} {part} (only the {TRANSFORMER!r} of "
                              f"{TRANSFORMER_PLUGIN})")
        parts[part] = options = getattr(config.model, part).options
        if options.activation not in activations:
            raise ConfigError(f"model.{part}.activation: {engine} has no {options.activation!r}")
    if not parts["decoder"].cross_attention:
        raise ConfigError(f"model.decoder.cross_attention: {engine}'s decoder attends to the encoder")
    return parts


def marian_config(config, components: dict, shape) -> dict:
    """The MarianConfig keys (as a dict) of a seqkit run's ``config`` (RunConfig), ``components``
    (the checkpoint's record of which plugin built each part) and model ``shape``; a ConfigError
    naming the first seqkit option Marian cannot express."""
    parts = transformer_parts(config, components, shape, "MarianMT", ACTIVATIONS)
    for part, options in parts.items():
        for key, wanted in (("norm", "post"), ("positions", "sinusoidal"), ("bias", True)):
            value = getattr(options, key)
            if value != wanted:
                raise ConfigError(f"model.{part}.{key}: MarianMT needs {_toml(wanted)}, this run has "
                                  f"{_toml(value)}")
    encoder, decoder = parts["encoder"], parts["decoder"]
    if encoder.activation != decoder.activation:
        raise ConfigError(f"model.decoder.activation: MarianMT has one activation for both; the encoder "
                          f"has {encoder.activation!r}, the decoder {decoder.activation!r}")
    d = config.model.d_model
    shared = bool(config.model.share_embeddings)
    return {
        "d_model": d,
        "vocab_size": shape.source_vocab,
        "decoder_vocab_size": shape.target_vocab,
        "share_encoder_decoder_embeddings": shared,
        "tie_word_embeddings": bool(config.model.tie_embeddings),
        "encoder_layers": encoder.layers, "decoder_layers": decoder.layers,
        "encoder_attention_heads": encoder.heads, "decoder_attention_heads": decoder.heads,
        "encoder_ffn_dim": encoder.ffn_size or 4 * d, "decoder_ffn_dim": decoder.ffn_size or 4 * d,
        "activation_function": ACTIVATIONS[encoder.activation],
        "max_position_embeddings": min(encoder.max_positions, decoder.max_positions),
        "dropout": decoder.dropout, "attention_dropout": decoder.attention_dropout,
        "activation_dropout": 0.0,
        "scale_embedding": True,
        "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "decoder_start_token_id": 1,
        "forced_eos_token_id": None,
    }


def _toml(value) -> str:
    return str(value).lower() if isinstance(value, bool) else f'"{value}"'


@dataclass
class MarianShape:
    """What an imported model's seqkit config takes from a MarianConfig."""

    d_model: int
    encoder: dict
    decoder: dict
    share_embeddings: bool
    tie_embeddings: bool
    dropout: float


def seqkit_options(marian: dict) -> MarianShape:
    """The seqkit options of a MarianConfig ``marian`` (its dict); a ConfigError naming the key of
    config.json seqkit cannot hold."""
    if marian.get("model_type") not in (None, "marian"):
        raise ConfigError(f"config.json: model_type {marian.get('model_type')!r} is not a MarianMT "
                          "model ('marian')")
    for key, wanted in (("scale_embedding", True), ("normalize_before", False),
                        ("add_final_layer_norm", False), ("normalize_embedding", False),
                        ("static_position_embeddings", True)):
        if key in marian and bool(marian[key]) != wanted:
            raise ConfigError(f"config.json: {key} = {str(marian[key]).lower()} is not supported "
                              f"(seqkit's Transformer has {str(wanted).lower()})")
    activation = marian.get("activation_function", "gelu")
    if activation not in FROM_MARIAN_ACTIVATION:
        raise ConfigError(f"config.json: activation_function {activation!r} is not supported "
                          f"(seqkit has {', '.join(sorted(FROM_MARIAN_ACTIVATION))})")
    d = marian["d_model"]
    dropout = float(marian.get("dropout", 0.1))
    common = {"name": TRANSFORMER, "norm": "post", "positions": "sinusoidal", "bias": True,
              "activation": FROM_MARIAN_ACTIVATION[activation], "dropout": dropout,
              "attention_dropout": float(marian.get("attention_dropout", 0.0)),
              "max_positions": int(marian.get("max_position_embeddings", 1024))}
    encoder = {**common, "layers": marian["encoder_layers"], "heads": marian["encoder_attention_heads"],
               "ffn_size": marian["encoder_ffn_dim"]}
    decoder = {**common, "layers": marian["decoder_layers"], "heads": marian["decoder_attention_heads"],
               "ffn_size": marian["decoder_ffn_dim"]}
    return MarianShape(d, encoder, decoder, bool(marian.get("share_encoder_decoder_embeddings", True)),
                       bool(marian.get("tie_word_embeddings", True)), dropout)


# -- weights ------------------------------------------------------------------------------------

_ENCODER_LAYER = {"ln_1": "self_attn_layer_norm", "ln_2": "final_layer_norm", "mlp.fc": "fc1",
                  "mlp.proj": "fc2", "attn.proj": "self_attn.out_proj"}
_DECODER_LAYER = {"ln_1": "self_attn_layer_norm", "ln_2": "encoder_attn_layer_norm",
                  "ln_3": "final_layer_norm", "mlp.fc": "fc1", "mlp.proj": "fc2",
                  "attn.proj": "self_attn.out_proj", "cross.q": "encoder_attn.q_proj",
                  "cross.proj": "encoder_attn.out_proj"}
_FUSED = {"attn.qkv": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
          "cross.kv": ("encoder_attn.k_proj", "encoder_attn.v_proj")}
# how a tensor touches the residual stream: "in" (a Linear reading it: weight columns), "out" (a
# Linear writing it: weight rows and bias), "norm" (a LayerNorm over it), "embedding" (its columns)
_READS = ("attn.qkv", "cross.q", "cross.kv", "mlp.fc")
_WRITES = ("attn.proj", "cross.proj", "mlp.proj")


def _permute(name: str, tensor: Tensor, order: Tensor) -> Tensor:
    """``tensor`` (seqkit's ``name``) with its residual-stream axis taken in ``order``."""
    inner = name.rsplit(".", 1)[0].split(".", 3)[-1]  # "attn.qkv" of "encoder.layers.0.attn.qkv.weight"
    if name.endswith(("embedding.weight", "head.weight")):
        return tensor[:, order]
    if inner in _READS:
        return tensor[:, order] if name.endswith(".weight") else tensor
    if inner in _WRITES:
        return tensor[order]
    return tensor[order]  # LayerNorm weight and bias


def to_marian_state(state: dict[str, Tensor], d_model: int, shared: bool) -> dict[str, Tensor]:
    """A seqkit Transformer seq2seq state dict as a MarianMTModel state dict (positions left out:
    Marian computes them)."""
    order = residual_order(d_model)
    out: dict[str, Tensor] = {}
    for name, tensor in state.items():
        tensor = _permute(name, tensor, order)
        if name == "source_embedding.weight":
            out["model.encoder.embed_tokens.weight"] = tensor
            if shared:
                out["model.shared.weight"] = tensor
        elif name == "target_embedding.weight":
            out["model.decoder.embed_tokens.weight"] = tensor
        elif name == "head.weight":
            out["lm_head.weight"] = tensor
        else:
            for marian_name, value in _layer_names(name, tensor):
                out[marian_name] = value
    if shared:
        out.setdefault("model.decoder.embed_tokens.weight", out["model.shared.weight"])
    out["final_logits_bias"] = torch.zeros(1, out["lm_head.weight"].size(0))
    return out


def _layer_names(name: str, tensor: Tensor):
    """(Marian name, tensor) pairs of one seqkit layer parameter ("encoder.layers.3.attn.qkv.bias")."""
    part, _, index, rest = name.split(".", 3)
    inner, kind = rest.rsplit(".", 1)
    prefix = f"model.{part}.layers.{index}"
    if inner in _FUSED:
        pieces = tensor.chunk(len(_FUSED[inner]), dim=0)
        return [(f"{prefix}.{target}.{kind}", piece)
                for target, piece in zip(_FUSED[inner], pieces, strict=True)]
    names = _ENCODER_LAYER if part == "encoder" else _DECODER_LAYER
    return [(f"{prefix}.{names[inner]}.{kind}", tensor)]


def from_marian_state(marian: dict[str, Tensor], d_model: int, source_order: list[int],
                      target_order: list[int]) -> dict[str, Tensor]:
    """A MarianMTModel state dict as a seqkit Transformer state dict, the vocabularies in seqkit's
    order (``source_order``/``target_order``: the Marian id of each seqkit id)."""
    inverse = torch.argsort(residual_order(d_model))
    encoder_embedding = marian.get("model.encoder.embed_tokens.weight", marian.get("model.shared.weight"))
    decoder_embedding = marian.get("model.decoder.embed_tokens.weight", marian.get("model.shared.weight"))
    head = marian.get("lm_head.weight", decoder_embedding)
    state = {"source_embedding.weight": encoder_embedding[source_order],
             "target_embedding.weight": decoder_embedding[target_order],
             "head.weight": head[target_order]}
    for part, names in (("encoder", _ENCODER_LAYER), ("decoder", _DECODER_LAYER)):
        index = 0
        while f"model.{part}.layers.{index}.fc1.weight" in marian:
            prefix = f"model.{part}.layers.{index}"
            for kind in ("weight", "bias"):
                for inner, target in names.items():
                    state[f"{part}.layers.{index}.{inner}.{kind}"] = marian[f"{prefix}.{target}.{kind}"]
                for inner, targets in _FUSED.items():
                    if part == "encoder" and inner == "cross.kv":
                        continue
                    state[f"{part}.layers.{index}.{inner}.{kind}"] = torch.cat(
                        [marian[f"{prefix}.{t}.{kind}"] for t in targets])
            index += 1
    return {name: _permute(name, tensor, inverse).contiguous() for name, tensor in state.items()}
