"""The Transformer plugin: attention against a naive reference, padding invariance, causality,
incremental decoding against the full pass, cache reordering, attention maps, config errors."""

import dataclasses
import math
import types
import typing

import pytest
import torch

import seqkit_transformer
from seqkit import make_plugin_manager
from seqkit.errors import ConfigError
from seqkit.interfaces import EncoderOutput
from seqkit_transformer.attention import CrossAttention, SelfAttention
from seqkit_transformer.config import TransformerDecoderConfig, TransformerEncoderConfig
from seqkit_transformer.decoder import TransformerDecoder
from seqkit_transformer.encoder import TransformerEncoder

D = 16  # d_model
TOL = 1e-5


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def tiny(config_class, **overrides):
    return config_class(**{"layers": 2, "heads": 4, "max_positions": 32, **overrides})


def make_encoder(**overrides) -> TransformerEncoder:
    return TransformerEncoder(tiny(TransformerEncoderConfig, **overrides), D).eval()


def make_decoder(**overrides) -> TransformerDecoder:
    return TransformerDecoder(tiny(TransformerDecoderConfig, **overrides), D).eval()


def lengths_mask(lengths: list[int], S: int) -> torch.Tensor:
    return torch.arange(S)[None, :] < torch.tensor(lengths)[:, None]  # (B, S)


def encoder_output(lengths=(5, 3, 4), S=5) -> EncoderOutput:
    return EncoderOutput(memory=torch.randn(len(lengths), S, D), mask=lengths_mask(list(lengths), S))


def naive_attention(x_q, x_kv, wq, bq, wk, bk, wv, bv, wo, bo, heads, allowed):
    """softmax(Q Kᵀ / √d_k) V, head by head, from explicit weights. allowed: (B, T, S) bool."""
    B, T, _ = x_q.shape
    hs = D // heads
    q, k, v = x_q @ wq.T + bq, x_kv @ wk.T + bk, x_kv @ wv.T + bv
    out = torch.zeros(B, T, D)
    for h in range(heads):
        cols = slice(h * hs, (h + 1) * hs)
        scores = q[..., cols] @ k[..., cols].transpose(1, 2) / math.sqrt(hs)  # (B, T, S)
        scores = scores.masked_fill(~allowed, float("-inf"))
        out[..., cols] = torch.softmax(scores, dim=-1) @ v[..., cols]
    return out @ wo.T + bo


# -- attention against the naive reference ------------------------------------------------------


def self_attention_reference(attn: SelfAttention, x, allowed):
    wq, wk, wv = attn.qkv.weight.split(D)
    bq, bk, bv = attn.qkv.bias.split(D)
    w = (wq, bq, wk, bk, wv, bv, attn.proj.weight, attn.proj.bias)
    return naive_attention(x, x, *w, attn.heads, allowed)


def test_self_attention_with_padding_mask_matches_naive():
    attn = SelfAttention(tiny(TransformerEncoderConfig), D).eval()
    x = torch.randn(3, 6, D)
    mask = lengths_mask([6, 2, 4], 6)
    got = attn(x, mask=mask[:, None, None, :])
    want = self_attention_reference(attn, x, mask[:, None, :].expand(3, 6, 6))
    torch.testing.assert_close(got, want, atol=TOL, rtol=0)


def test_self_attention_with_causal_mask_matches_naive():
    attn = SelfAttention(tiny(TransformerDecoderConfig), D).eval()
    x = torch.randn(2, 7, D)
    causal = torch.ones(7, 7, dtype=torch.bool).tril().expand(2, 7, 7)
    torch.testing.assert_close(attn(x, is_causal=True), self_attention_reference(attn, x, causal),
                               atol=TOL, rtol=0)


def test_cross_attention_with_padding_mask_matches_naive():
    cross = CrossAttention(tiny(TransformerDecoderConfig), D).eval()
    x, memory = torch.randn(3, 4, D), torch.randn(3, 6, D)
    mask = lengths_mask([6, 1, 3], 6)
    wk, wv = cross.kv.weight.split(D)
    bk, bv = cross.kv.bias.split(D)
    want = naive_attention(x, memory, cross.q.weight, cross.q.bias, wk, bk, wv, bv,
                           cross.proj.weight, cross.proj.bias, cross.heads,
                           mask[:, None, :].expand(3, 4, 6))
    for need_weights in (False, True):  # the SDPA path and the explicit-softmax path
        got, _ = cross(x, *cross.memory_kv(memory), mask, need_weights=need_weights)
        torch.testing.assert_close(got, want, atol=TOL, rtol=0)


def test_sinusoidal_positions_follow_the_formula():
    encoder = make_encoder(dropout=0.0)
    pe = encoder.positions(torch.zeros(1, 5, D), offset=3)[0]  # positions 3..7
    pos, i = 6, 5  # row 3, pair 5 -> dims 10 (sin) and 11 (cos)
    angle = pos / 10000 ** (2 * i / D)
    assert pe[3, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
    assert pe[3, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


# -- encoder ------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_encoder_padding_never_changes_real_positions(norm, positions):
    encoder = make_encoder(norm=norm, positions=positions)
    lengths = [5, 3]
    x = torch.randn(2, 5, D)
    out = encoder(x, lengths_mask(lengths, 5))
    # the same batch padded with 4 more positions of junk
    padded = torch.cat([x, 100 * torch.randn(2, 4, D)], dim=1)
    padded[1, 3:] = -50.0
    out_padded = encoder(padded, lengths_mask(lengths, 9))
    for b, n in enumerate(lengths):
        torch.testing.assert_close(out_padded.memory[b, :n], out.memory[b, :n], atol=TOL, rtol=0)
        # and each row alone, without any padding
        alone = encoder(x[b : b + 1, :n], torch.ones(1, n, dtype=torch.bool))
        torch.testing.assert_close(out.memory[b, :n], alone.memory[0], atol=TOL, rtol=0)
    assert out.state is None and torch.equal(out.mask, lengths_mask(lengths, 5))
    assert out.memory.shape == (2, 5, D)


# -- decoder ------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_encoder", [True, False])
def test_decoder_is_causal(with_encoder):
    decoder = make_decoder()
    enc = encoder_output() if with_encoder else None
    y = torch.randn(3, 6, D)
    hidden, cache = decoder(y, enc)
    assert hidden.shape == (3, 6, D) and cache is None
    for t in range(6):
        changed = y.clone()
        changed[:, t + 1 :] = torch.randn(3, 5 - t, D)
        torch.testing.assert_close(decoder(changed, enc)[0][:, : t + 1], hidden[:, : t + 1],
                                   atol=TOL, rtol=0)
        if t < 5:
            assert not torch.allclose(decoder(changed, enc)[0][:, t + 1 :], hidden[:, t + 1 :])


def decode_in_chunks(decoder, y, enc, chunk, max_len=None):
    cache = decoder.init_cache(enc, y.size(0), max_len or y.size(1))
    pieces = []
    for start in range(0, y.size(1), chunk):
        hidden, cache = decoder(y[:, start : start + chunk], enc, cache)
        pieces.append(hidden)
    return torch.cat(pieces, dim=1), cache


@pytest.mark.parametrize("chunk", [1, 3])
@pytest.mark.parametrize("with_encoder", [True, False])
@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
@pytest.mark.parametrize("norm", ["pre", "post"])
@torch.no_grad()
def test_incremental_equals_full(chunk, with_encoder, positions, norm):
    decoder = make_decoder(positions=positions, norm=norm)
    enc = encoder_output() if with_encoder else None
    y = torch.randn(3, 7, D)  # chunks of 3: 3 + 3 + 1
    full, _ = decoder(y, enc)
    incremental, cache = decode_in_chunks(decoder, y, enc, chunk, max_len=9)
    assert cache["length"] == 7
    torch.testing.assert_close(incremental, full, atol=TOL, rtol=0)


@pytest.mark.parametrize("index", [[2, 0, 1], [2, 0], [1, 1, 0, 2]], ids=["perm", "subset", "beam"])
@torch.no_grad()
def test_reorder_cache_equals_recomputing_with_that_batch(index):
    decoder = make_decoder()
    enc = encoder_output()
    y = torch.randn(3, 7, D)
    _, cache = decode_in_chunks(decoder, y[:, :4], enc, chunk=1, max_len=7)
    index = torch.tensor(index)
    cache = decoder.reorder_cache(cache, index)
    enc_sel, y_sel = enc.index_select(index), y.index_select(0, index)
    rest = []
    for t in range(4, 7):
        hidden, cache = decoder(y_sel[:, t : t + 1], enc_sel, cache)
        rest.append(hidden)
    full, _ = decoder(y_sel, enc_sel)
    torch.testing.assert_close(torch.cat(rest, dim=1), full[:, 4:], atol=TOL, rtol=0)


@torch.no_grad()
def test_advancing_one_cache_twice_is_refused_and_copying_branches():
    decoder = make_decoder()
    enc = encoder_output()
    y_a, y_b = torch.randn(3, 3, D), torch.randn(3, 3, D)
    _, cache = decode_in_chunks(decoder, y_a[:, :2], enc, chunk=1, max_len=3)
    branch = decoder.reorder_cache(cache, torch.arange(3))  # a private copy
    hidden_a, cache_a = decoder(y_a[:, 2:], enc, cache)
    with pytest.raises(RuntimeError, match="already advanced"):
        decoder(y_b[:, 2:], enc, cache)  # would overwrite what cache_a holds
    hidden_b, _ = decoder(y_b[:, 2:], enc, branch)
    y_b[:, :2] = y_a[:, :2]
    torch.testing.assert_close(hidden_a, decoder(y_a, enc)[0][:, 2:], atol=TOL, rtol=0)
    torch.testing.assert_close(hidden_b, decoder(y_b, enc)[0][:, 2:], atol=TOL, rtol=0)
    assert cache_a["length"] == 3 and cache["length"] == 2  # the old dict is not mutated


@torch.no_grad()
def test_cache_layout_is_batch_first():
    decoder = make_decoder()
    cache = decoder.init_cache(encoder_output(S=5), 3, 8)
    assert cache["length"] == 0 and cache["source"]["memory_mask"].shape == (3, 5)
    for layer_cache in cache["layers"]:
        assert layer_cache["k"].shape == layer_cache["v"].shape == (3, 4, 8, D // 4)
    for layer_cache in cache["source"]["layers"]:  # what depends on the source only
        assert layer_cache["memory_k"].shape == layer_cache["memory_v"].shape == (3, 4, 5, D // 4)
    assert "source" not in decoder.init_cache(None, 3, 8)


@torch.no_grad()
def test_cross_attention_keys_and_values_are_computed_once():
    decoder = make_decoder()
    calls = []
    for layer in decoder.layers:
        layer.cross.kv.register_forward_hook(lambda *args: calls.append(1))
    enc = encoder_output()
    cache = decoder.init_cache(enc, 3, 6)
    assert len(calls) == len(decoder.layers)
    for _ in range(6):
        _, cache = decoder(torch.randn(3, 1, D), enc, cache)
    assert len(calls) == len(decoder.layers)  # none per step


@torch.no_grad()
def test_record_attention_gives_normalised_weights_and_the_same_output():
    decoder = make_decoder()
    enc = encoder_output(lengths=(5, 2, 4))
    y = torch.randn(3, 6, D)
    fast, _ = decoder(y, enc)
    assert decoder.attention_weights is None
    decoder.record_attention = True
    slow, _ = decoder(y, enc)
    weights = decoder.attention_weights
    assert weights.shape == (3, 6, 5)
    torch.testing.assert_close(slow, fast, atol=TOL, rtol=0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 6), atol=TOL, rtol=0)
    assert torch.all(weights.masked_select(~enc.mask[:, None, :]) == 0)
    # incremental decoding records the new positions' weights
    cache = decoder.init_cache(enc, 3, 6)
    _, cache = decoder(y[:, :4], enc, cache)
    _, cache = decoder(y[:, 4:], enc, cache)
    torch.testing.assert_close(decoder.attention_weights, weights[:, 4:], atol=TOL, rtol=0)
    decoder(y, None)
    assert decoder.attention_weights is None  # nothing to attend over


@torch.no_grad()
def test_decoder_ignores_encoder_state():
    decoder = make_decoder()
    enc = encoder_output()
    with_state = EncoderOutput(enc.memory, enc.mask, state=torch.randn(3, 2, D))
    y = torch.randn(3, 4, D)
    full, _ = decoder(y, with_state)
    torch.testing.assert_close(full, decoder(y, enc)[0], atol=0, rtol=0)
    incremental, _ = decode_in_chunks(decoder, y, with_state, chunk=2)
    torch.testing.assert_close(incremental, full, atol=TOL, rtol=0)
    beams = with_state.index_select(torch.tensor([0, 0, 2]))
    assert decoder(y[[0, 0, 2]], beams)[0].shape == (3, 4, D)


def test_language_model_decoder_owns_no_cross_attention():
    decoder = make_decoder(cross_attention=False)
    assert all(layer.cross is None for layer in decoder.layers)
    y = torch.randn(2, 5, D)
    with torch.no_grad():
        torch.testing.assert_close(decode_in_chunks(decoder, y, None, chunk=2)[0],
                                   decoder(y, None)[0], atol=TOL, rtol=0)
    with pytest.raises(ValueError, match="cross_attention"):
        decoder(y, encoder_output(lengths=(5, 5)))


def test_lengths_past_the_limits_are_errors():
    decoder = make_decoder(positions="learned", max_positions=8)
    with pytest.raises(ValueError, match="max_positions"):
        decoder(torch.randn(1, 9, D), None)
    with pytest.raises(ValueError, match="max_positions"):
        decoder.init_cache(None, 1, 9)
    cache = decoder.init_cache(None, 1, 4)
    with pytest.raises(ValueError, match="holds 4 positions"):
        decoder(torch.randn(1, 5, D), None, cache)


# -- training -----------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_forward_backward(norm):
    encoder = make_encoder(norm=norm, attention_dropout=0.1).train()
    decoder = make_decoder(norm=norm, attention_dropout=0.1).train()
    enc = encoder(torch.randn(3, 5, D, requires_grad=True), lengths_mask([5, 3, 4], 5))
    hidden, _ = decoder(torch.randn(3, 6, D), enc)
    hidden.pow(2).mean().backward()
    for name, p in [*encoder.named_parameters(), *decoder.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


# -- configuration and registration -------------------------------------------------------------


@pytest.mark.parametrize("factory", [TransformerEncoder, TransformerDecoder])
@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("heads", 5, "heads: 5 does not divide d_model 128"),
        ("layers", 0, "layers"),
        ("dropout", 1.0, "dropout"),
        ("dropout", -0.1, "dropout"),
        ("attention_dropout", 1.5, "attention_dropout"),
        ("ffn_size", 0, "ffn_size"),
        ("norm", "middle", "norm"),
        ("max_positions", 0, "max_positions"),
    ],
)
def test_invalid_options_raise_config_error_with_key(factory, key, value, message):
    config_class = TransformerEncoderConfig if factory is TransformerEncoder else TransformerDecoderConfig
    with pytest.raises(ConfigError, match=message) as info:
        factory(config_class(**{key: value}), 128)
    assert info.value.key == key


@pytest.mark.parametrize("config_class", [TransformerEncoderConfig, TransformerDecoderConfig])
def test_config_fields_have_defaults_and_simple_types(config_class):
    simple = (int, float, bool, str)
    hints = typing.get_type_hints(config_class)
    for field in dataclasses.fields(config_class):
        assert field.default is not dataclasses.MISSING, field.name
        kind = hints[field.name]
        if typing.get_origin(kind) in (typing.Union, types.UnionType):  # X | None
            kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
        assert kind in simple or typing.get_origin(kind) is typing.Literal, field.name
    config = config_class()
    assert (config.layers, config.heads, config.ffn_size, config.norm) == (6, 8, None, "pre")


def test_hooks_register_transformer():
    manager = make_plugin_manager(entry_points=False, plugins=[("seqkit_transformer", seqkit_transformer)])
    encoder, decoder = manager.get("encoder", "transformer"), manager.get("decoder", "transformer")
    assert (encoder.factory, encoder.config_class) == (TransformerEncoder, TransformerEncoderConfig)
    assert (decoder.factory, decoder.config_class) == (TransformerDecoder, TransformerDecoderConfig)
    decoder = decoder.factory(TransformerDecoderConfig(layers=1, heads=2), 8)
    assert decoder.d_model == 8 and len(decoder.layers) == 1
