"""The baseline of ``seqkit bench --baseline raw``: the same models written directly in PyTorch.

Each raw model mirrors a seqkit seq2seq model of the same config, module for module, so that the
bench compares seqkit's overhead and nothing else:

  transformer   torch.nn.Transformer (batch_first, norm_first for seqkit's pre-norm), with the
                inner-FFN dropout switched off and the attention dropout set as seqkit does
  rnn/lstm/gru  nn.RNN/LSTM/GRU encoder; nn.RNN/LSTM/GRU decoder starting from zeros, Luong
                attention after it (dot or general), hidden = tanh(W_c [context; h_t])

Both kinds share seqkit's composition: token embeddings scaled by sqrt(D), embedding dropout, an
output head tied to the target embedding when seqkit ties it. ``copy_from_seqkit`` loads a seqkit
model's weights, after which both give the same logits (the tests check it), and the parameter
counts are equal. Configs a raw model cannot mirror (mixed pairs, Bahdanau attention, bridges,
bidirectional or resized recurrent layers, post-norm, learned positions) raise ConfigError.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqkit.config import ModelConfig
from seqkit.errors import ConfigError

RECURRENT = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def build_raw_model(config: ModelConfig, vocab: int) -> nn.Module:
    """The raw PyTorch twin of the seq2seq model seqkit builds from ``config``."""
    encoder, decoder = config.encoder.name, config.decoder.name
    if encoder != decoder:
        raise ConfigError(f"--baseline raw: no raw PyTorch twin of the mixed pair {encoder}+{decoder}")
    if config.share_embeddings:
        raise ConfigError("--baseline raw: share_embeddings has no raw twin")
    if encoder == "transformer":
        return RawTransformer(config, vocab)
    if encoder in RECURRENT:
        return RawRecurrent(config, vocab)
    raise ConfigError(f"--baseline raw: no raw PyTorch twin of architecture {encoder!r}")


def _unsupported(key: str, value: object) -> ConfigError:
    return ConfigError(f"--baseline raw: {key} = {value!r} has no raw PyTorch twin")


class _Composition(nn.Module):
    """Embeddings in, output head out, as seqkit.model.SeqModel does."""

    def __init__(self, config: ModelConfig, vocab: int):
        super().__init__()
        d = config.d_model
        self.scale = math.sqrt(d)
        self.source_embedding = nn.Parameter(torch.randn(vocab, d) * d**-0.5)
        self.target_embedding = nn.Parameter(torch.randn(vocab, d) * d**-0.5)
        self.dropout = nn.Dropout(config.embedding_dropout)
        self.head = nn.Linear(d, vocab, bias=False)
        if config.tie_embeddings:
            self.head.weight = self.target_embedding

    def embed(self, tokens: Tensor, table: Tensor) -> Tensor:
        return self.dropout(F.embedding(tokens, table) * self.scale)  # (B, T, D)


class RawTransformer(_Composition):
    def __init__(self, config: ModelConfig, vocab: int):
        super().__init__(config, vocab)
        enc, dec = config.encoder.options, config.decoder.options
        for key in ("layers", "heads", "ffn_size", "dropout", "attention_dropout", "activation"):
            if getattr(enc, key) != getattr(dec, key):
                raise _unsupported(f"different encoder and decoder {key}", getattr(dec, key))
        for options in (enc, dec):
            if options.norm != "pre":
                raise _unsupported("norm", options.norm)
            if options.positions != "sinusoidal":
                raise _unsupported("positions", options.positions)
            if not options.bias:
                raise _unsupported("bias", options.bias)
        if not dec.cross_attention:
            raise _unsupported("cross_attention", dec.cross_attention)
        d = config.d_model
        with warnings.catch_warnings():  # "nested tensors need post-norm": not used here
            warnings.simplefilter("ignore", UserWarning)
            self.transformer = nn.Transformer(
                d_model=d, nhead=enc.heads, num_encoder_layers=enc.layers,
                num_decoder_layers=dec.layers, dim_feedforward=enc.ffn_size or 4 * d,
                dropout=enc.dropout, activation=enc.activation, batch_first=True,
                norm_first=True,
            )
        # nn.Transformer drops out inside the FFN and on attention weights with the one dropout
        # rate; seqkit drops out the FFN's output only and has a separate attention_dropout
        for layer in (*self.transformer.encoder.layers, *self.transformer.decoder.layers):
            layer.dropout = nn.Identity()
            layer.self_attn.dropout = enc.attention_dropout
            if hasattr(layer, "multihead_attn"):
                layer.multihead_attn.dropout = enc.attention_dropout
        self.position_dropout = nn.Dropout(enc.dropout)
        self.register_buffer("inv_freq", torch.exp(torch.arange(0, d, 2).float()
                                                   * (-math.log(10000.0) / d)), persistent=False)

    def positions(self, x: Tensor) -> Tensor:
        angle = torch.arange(x.size(1), device=x.device).float()[:, None] * self.inv_freq  # (T, D/2)
        pe = torch.stack((angle.sin(), angle.cos()), dim=-1).flatten(1)[:, : x.size(2)]  # (T, D)
        return self.position_dropout(x + pe.to(x.dtype))

    def encode(self, source: Tensor, mask: Tensor) -> Tensor:
        x = self.positions(self.embed(source, self.source_embedding))
        return self.transformer.encoder(x, src_key_padding_mask=~mask)  # (B, S, D)

    def forward(self, source: Tensor, mask: Tensor, target: Tensor) -> Tensor:
        memory = self.encode(source, mask)
        y = self.positions(self.embed(target, self.target_embedding))
        causal = nn.Transformer.generate_square_subsequent_mask(y.size(1), device=y.device,
                                                                dtype=y.dtype)
        hidden = self.transformer.decoder(y, memory, tgt_mask=causal, tgt_is_causal=True,
                                          memory_key_padding_mask=~mask)
        return self.head(hidden)  # (B, T, V)


class RawRecurrent(_Composition):
    """Encoder RNN, decoder RNN from a zero state, Luong attention after it (fairseq/OpenNMT's
    recurrent seq2seq without input feeding)."""

    def __init__(self, config: ModelConfig, vocab: int):
        super().__init__(config, vocab)
        enc, dec = config.encoder.options, config.decoder.options
        d = config.d_model
        for key, value, default in (("encoder.hidden_size", enc.hidden_size, None),
                                    ("encoder.bidirectional", enc.bidirectional, False),
                                    ("decoder.hidden_size", dec.hidden_size, None),
                                    ("decoder.bridge", dec.bridge, "none")):
            if value != default and not (key.endswith("hidden_size") and value == d):
                raise _unsupported(key, value)
        if dec.attention not in ("dot", "general"):
            raise _unsupported("decoder.attention", dec.attention)
        cell = config.encoder.name
        options = {"nonlinearity": enc.nonlinearity} if cell == "rnn" else {}
        self.encoder = RECURRENT[cell](d, d, num_layers=enc.layers, batch_first=True,
                                       dropout=enc.dropout if enc.layers > 1 else 0.0, **options)
        options = {"nonlinearity": dec.nonlinearity} if cell == "rnn" else {}
        self.decoder = RECURRENT[cell](d, d, num_layers=dec.layers, batch_first=True,
                                       dropout=dec.dropout if dec.layers > 1 else 0.0, **options)
        self.attention_query = nn.Linear(d, d, bias=False) if dec.attention == "general" else None
        self.attention_output = nn.Linear(2 * d, d)

    def encode(self, source: Tensor, mask: Tensor) -> Tensor:
        memory, _ = self.encoder(self.embed(source, self.source_embedding))  # (B, S, D)
        return memory

    def forward(self, source: Tensor, mask: Tensor, target: Tensor) -> Tensor:
        memory = self.encode(source, mask)
        h, _ = self.decoder(self.embed(target, self.target_embedding))  # (B, T, D)
        query = self.attention_query(h) if self.attention_query is not None else h
        scores = query @ memory.transpose(1, 2)  # (B, T, S)
        scores = scores.masked_fill(~mask[:, None, :], torch.finfo(scores.dtype).min)
        context = torch.softmax(scores, dim=-1) @ memory  # (B, T, D)
        hidden = torch.tanh(self.attention_output(torch.cat([context, h], dim=-1)))
        return self.head(hidden)  # (B, T, V)


@torch.no_grad()
def copy_from_seqkit(raw: nn.Module, model: nn.Module) -> None:
    """Load the weights of the seqkit model ``model`` into its raw twin ``raw``."""
    ours = dict(model.named_parameters(remove_duplicate=False))
    pairs = {"source_embedding": "source_embedding.weight",
             "target_embedding": "target_embedding.weight"}
    if isinstance(raw, RawTransformer):
        pairs.update(_transformer_names(raw))
    else:
        pairs.update({"attention_output.weight": "decoder.output.weight",
                      "attention_output.bias": "decoder.output.bias"})
        if raw.attention_query is not None:
            pairs["attention_query.weight"] = "decoder.attention.query.weight"
        for name, _ in raw.encoder.named_parameters():
            pairs[f"encoder.{name}"] = f"encoder.rnn.{name}"
        for name, _ in raw.decoder.named_parameters():
            pairs[f"decoder.{name}"] = f"decoder.rnn.{name}"
    params = dict(raw.named_parameters())
    missing = set(params) - set(pairs) - {"head.weight"}
    if missing:
        raise ValueError(f"no seqkit parameter for {sorted(missing)}")
    for raw_name, our_names in pairs.items():
        if isinstance(our_names, str):
            our_names = (our_names,)
        params[raw_name].copy_(torch.cat([ours[name] for name in our_names]))


def _transformer_names(raw: RawTransformer) -> dict[str, str | tuple[str, str]]:
    names = {}
    for side, count in (("encoder", len(raw.transformer.encoder.layers)),
                        ("decoder", len(raw.transformer.decoder.layers))):
        for i in range(count):
            ours, theirs = f"{side}.layers.{i}", f"transformer.{side}.layers.{i}"
            layer = {"self_attn.in_proj_": "attn.qkv.", "self_attn.out_proj.": "attn.proj.",
                     "linear1.": "mlp.fc.", "linear2.": "mlp.proj.", "norm1.": "ln_1.",
                     "norm2.": "ln_2.",
                     "norm3.": "ln_3.", "multihead_attn.out_proj.": "cross.proj."}
            if side == "encoder":
                layer.pop("norm3.")
                layer.pop("multihead_attn.out_proj.")
            for kind in ("weight", "bias"):
                for theirs_part, ours_part in layer.items():
                    names[f"{theirs}.{theirs_part}{kind}"] = f"{ours}.{ours_part}{kind}"
            if side == "decoder":  # torch fuses the cross-attention's q and kv projections
                names[f"{theirs}.multihead_attn.in_proj_weight"] = (f"{ours}.cross.q.weight",
                                                                    f"{ours}.cross.kv.weight")
                names[f"{theirs}.multihead_attn.in_proj_bias"] = (f"{ours}.cross.q.bias",
                                                                  f"{ours}.cross.kv.bias")
        names[f"transformer.{side}.norm.weight"] = f"{side}.ln_f.weight"
        names[f"transformer.{side}.norm.bias"] = f"{side}.ln_f.bias"
    return names
