"""The recurrent plugin (plugins/seqkit_recurrent): rnn, lstm and gru encoders and decoders."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import seqkit_recurrent
from seqkit import make_plugin_manager
from seqkit.errors import ConfigError
from seqkit.interfaces import Decoder, Encoder, EncoderOutput, iter_tensors

CELLS = ("rnn", "lstm", "gru")
ATTENTIONS = ("none", "dot", "general", "additive")
BRIDGES = ("none", "copy", "linear")
D = 8  # d_model
H = 6  # a hidden size other than d_model, so the projections are exercised
TOL = {"atol": 1e-5, "rtol": 1e-5}


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def _registered() -> tuple[dict, dict]:
    """What the plugin registers, through a real plugin manager: {name: (factory, config_class)}."""
    manager = make_plugin_manager(entry_points=False, plugins=[("seqkit_recurrent", seqkit_recurrent)])
    return tuple({name: (manager.get(kind, name).factory, manager.get(kind, name).config_class)
                  for name in manager.names(kind)} for kind in ("encoder", "decoder"))


ENCODERS, DECODERS = _registered()


def make_encoder(cell: str, seed: int = 0, **options) -> Encoder:
    torch.manual_seed(seed)
    factory, config_class = ENCODERS[cell]
    return factory(config_class(**options), D).eval()


def make_decoder(cell: str, seed: int = 1, **options) -> Decoder:
    torch.manual_seed(seed)
    factory, config_class = DECODERS[cell]
    return factory(config_class(**options), D).eval()


def decoder_options(attention: str, bridge: str, enc_layers: int = 2) -> dict:
    """A valid decoder config for an attention and a bridge: copy needs the encoder's layers and
    hidden_size == d_model, dot needs hidden_size == d_model; linear gets a deeper decoder."""
    layers = {"copy": enc_layers, "linear": enc_layers + 1, "none": 1}[bridge]
    hidden_size = D if bridge == "copy" or attention == "dot" else H
    return {"layers": layers, "hidden_size": hidden_size, "attention": attention, "bridge": bridge}


def source(lengths=(6, 4, 1, 5), S: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """x (B, S, D) with garbage on padding, and its right-padded mask (B, S)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), S, D, generator=generator)
    mask = torch.arange(S)[None, :] < torch.tensor(lengths)[:, None]
    return x, mask


def target(B: int = 4, T: int = 7, seed: int = 2) -> torch.Tensor:
    return torch.randn(B, T, D, generator=torch.Generator().manual_seed(seed))


def encode(cell: str = "lstm", **options) -> EncoderOutput:
    x, mask = source()
    with torch.no_grad():
        return make_encoder(cell, layers=2, bidirectional=True, hidden_size=H, **options)(x, mask)


def run_in_pieces(decoder: Decoder, y: torch.Tensor, enc, sizes) -> torch.Tensor:
    cache = decoder.init_cache(enc, y.shape[0], y.shape[1])
    outputs, start = [], 0
    for size in sizes:
        hidden, cache = decoder(y[:, start : start + size], enc, cache)
        outputs.append(hidden)
        start += size
        for tensor in iter_tensors(cache):
            assert tensor.shape[0] == y.shape[0], "cache tensors are batch first"
    assert start == y.shape[1]
    return torch.cat(outputs, dim=1)


# -- registration and config ----------------------------------------------------------------------


def test_hooks_register_every_cell_with_a_defaulted_config_dataclass():
    assert set(ENCODERS) == set(DECODERS) == set(CELLS)
    for _, config_class in [*ENCODERS.values(), *DECODERS.values()]:
        assert dataclasses.is_dataclass(config_class)
        config_class()  # every field has a default
    assert {f.name for f in dataclasses.fields(ENCODERS["rnn"][1])} == {
        "layers",
        "hidden_size",
        "dropout",
        "bidirectional",
        "nonlinearity",
    }
    assert "nonlinearity" not in {f.name for f in dataclasses.fields(DECODERS["gru"][1])}
    assert {f.name for f in dataclasses.fields(DECODERS["lstm"][1])} == {
        "layers",
        "hidden_size",
        "dropout",
        "attention",
        "bridge",
    }


@pytest.mark.parametrize(
    ("kind", "cell", "options", "key"),
    [
        ("encoder", "gru", {"layers": 0}, "layers"),
        ("encoder", "lstm", {"hidden_size": 0}, "hidden_size"),
        ("encoder", "rnn", {"dropout": 1.0}, "dropout"),
        ("encoder", "rnn", {"dropout": -0.1}, "dropout"),
        ("encoder", "rnn", {"nonlinearity": "sigmoid"}, "nonlinearity"),
        ("encoder", "gru", {"bidirectional": "yes"}, "bidirectional"),
        ("decoder", "lstm", {"layers": -1}, "layers"),
        ("decoder", "gru", {"dropout": 1.5}, "dropout"),
        ("decoder", "rnn", {"nonlinearity": "gelu"}, "nonlinearity"),
        ("decoder", "gru", {"attention": "multihead"}, "attention"),
        ("decoder", "gru", {"bridge": "mlp"}, "bridge"),
        ("decoder", "lstm", {"attention": "dot", "hidden_size": H}, "attention"),
        ("decoder", "lstm", {"bridge": "copy", "hidden_size": H}, "bridge"),
    ],
)
def test_invalid_options_raise_config_error_naming_the_key(kind, cell, options, key):
    factory, config_class = (ENCODERS if kind == "encoder" else DECODERS)[cell]
    with pytest.raises(ConfigError) as raised:
        factory(config_class(**options), D)
    assert raised.value.key == key


def test_copy_bridge_error_names_the_sizes():
    factory, config_class = DECODERS["gru"]
    with pytest.raises(ValueError, match=f"hidden_size={H}.*d_model={D}"):
        factory(config_class(bridge="copy", hidden_size=H), D)


# -- encoders -------------------------------------------------------------------------------------


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_encoder_equals_hand_computation(nonlinearity):
    # 1 layer, hidden_size == d_model: no projection, memory is h itself
    encoder = make_encoder("rnn", nonlinearity=nonlinearity)
    activation = torch.tanh if nonlinearity == "tanh" else torch.relu
    x, mask = source(lengths=(6, 4, 1))
    with torch.no_grad():
        out = encoder(x, mask)
    w_ih, w_hh = encoder.rnn.weight_ih_l0, encoder.rnn.weight_hh_l0
    b_ih, b_hh = encoder.rnn.bias_ih_l0, encoder.rnn.bias_hh_l0
    assert out.memory.shape == (3, 6, D) and out.state.shape == (3, 1, D)
    for row, length in enumerate((6, 4, 1)):
        h = torch.zeros(D)
        for t in range(length):
            h = activation(w_ih @ x[row, t] + b_ih + w_hh @ h + b_hh)
            torch.testing.assert_close(out.memory[row, t], h, **TOL)
        assert torch.all(out.memory[row, length:] == 0)
        torch.testing.assert_close(out.state[row, 0], h, **TOL)


def _state_tensors(state):
    return [state] if isinstance(state, torch.Tensor) else list(state)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", CELLS)
def test_encoder_padding_never_changes_real_positions(cell, bidirectional):
    encoder = make_encoder(cell, layers=2, hidden_size=H, bidirectional=bidirectional)
    lengths = (6, 4, 1, 5)
    x, mask = source(lengths, S=6)
    # the same sources with 3 more positions of padding, garbage in every padded slot
    longer, longer_mask = source(lengths, S=9, seed=5)
    longer[:, :6][mask] = x[mask]
    with torch.no_grad():
        short_out, long_out = encoder(x, mask), encoder(longer, longer_mask)
        alone = [encoder(x[row : row + 1, :n], mask[row : row + 1, :n]) for row, n in enumerate(lengths)]
    assert long_out.memory.shape == (4, 9, D)
    torch.testing.assert_close(long_out.memory[:, :6], short_out.memory, **TOL)
    assert torch.all(long_out.memory[~longer_mask] == 0)
    short_states, long_states = _state_tensors(short_out.state), _state_tensors(long_out.state)
    for short_state, long_state in zip(short_states, long_states, strict=True):
        assert short_state.shape == (4, 2, D)
        torch.testing.assert_close(long_state, short_state, **TOL)
    # each source alone, unpadded: the backward direction starts at the real last token
    for row, n in enumerate(lengths):
        torch.testing.assert_close(short_out.memory[row, :n], alone[row].memory[0], **TOL)
        for batched, single in zip(short_states, _state_tensors(alone[row].state), strict=True):
            torch.testing.assert_close(batched[row], single[0], **TOL)


def test_encoder_empty_source_gives_zeros_and_other_masks_are_refused():
    encoder = make_encoder("gru", bidirectional=True)
    x, mask = source(lengths=(6, 0))
    with torch.no_grad():
        out = encoder(x, mask)
    assert torch.all(out.memory[1] == 0) and torch.all(out.state[1] == 0)
    encoder(*source(lengths=(6, 3)))
    with pytest.raises(ValueError, match="right-padded"):
        encoder(x, source(lengths=(6, 3))[1].flip(1))  # left padding


# -- decoders -------------------------------------------------------------------------------------


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("cell", CELLS)
def test_decoder_is_causal(cell, attention):
    enc = encode("gru")
    decoder = make_decoder(cell, **decoder_options(attention, "linear"))
    y = target()
    with torch.no_grad():
        full, cache = decoder(y, enc)
        assert full.shape == y.shape and cache is None
        for t in (0, 3, 5):
            changed = y.clone()
            changed[:, t + 1 :] = torch.randn_like(changed[:, t + 1 :])
            torch.testing.assert_close(decoder(changed, enc)[0][:, : t + 1], full[:, : t + 1], **TOL)


# the encoder's cell matters to a bridge through its state: a tuple (h, c) from an LSTM, one
# tensor from a GRU (an RNN's is the same kind); without a bridge only the memory is read
BRIDGED = [("none", "rnn"), *((b, e) for b in ("copy", "linear") for e in ("lstm", "gru"))]


@pytest.mark.parametrize(("bridge", "enc_cell"), BRIDGED)
@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("cell", CELLS)
def test_decoder_in_pieces_equals_whole(cell, attention, bridge, enc_cell):
    enc = encode(enc_cell)
    decoder = make_decoder(cell, **decoder_options(attention, bridge))
    y = target(T=5)
    with torch.no_grad():
        full, _ = decoder(y, enc)
        torch.testing.assert_close(run_in_pieces(decoder, y, enc, [1] * 5), full, **TOL)
        torch.testing.assert_close(run_in_pieces(decoder, y, enc, [2, 1, 2]), full, **TOL)


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("cell", CELLS)
def test_reorder_cache_equals_recomputing_the_permuted_batch(cell, attention):
    enc = encode("lstm")
    decoder = make_decoder(cell, **decoder_options(attention, "linear"))
    y = target()
    for index in (torch.tensor([2, 0, 3, 1]), torch.tensor([2, 2, 0]), torch.tensor([1])):
        with torch.no_grad():
            cache = decoder.init_cache(enc, 4, 7)
            _, cache = decoder(y[:, :4], enc, cache)
            cache = decoder.reorder_cache(cache, index)
            rest, _ = decoder(y[index, 4:], enc.index_select(index), cache)
            expected, _ = decoder(y[index], enc.index_select(index))
        torch.testing.assert_close(rest, expected[:, 4:], **TOL)


@pytest.mark.parametrize("cell", CELLS)
def test_decoder_only_language_model(cell):
    decoder = make_decoder(cell, layers=2, hidden_size=H, attention="none")
    y = target()
    with torch.no_grad():
        full, _ = decoder(y, None)
        torch.testing.assert_close(run_in_pieces(decoder, y, None, [1] * 7), full, **TOL)
        torch.testing.assert_close(run_in_pieces(decoder, y, None, [2, 5]), full, **TOL)
    for options in ({}, {"attention": "none", "bridge": "linear"}, {"attention": "none", "bridge": "copy"}):
        with pytest.raises(ValueError, match="use (attention|bridge) = 'none'"):
            make_decoder(cell, **options)(y, None)
        with pytest.raises(ValueError, match="use (attention|bridge) = 'none'"):
            make_decoder(cell, **options).init_cache(None, 4, 7)


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("cell", CELLS)
def test_decoder_with_a_stateless_encoder_output(cell, attention):
    """A Transformer encoder's output: memory and mask, no state (padded memory holds garbage)."""
    memory, mask = source(lengths=(6, 2, 5, 3))
    enc = EncoderOutput(memory=memory, mask=mask, state=None)
    y = target()
    decoder = make_decoder(cell, **decoder_options(attention, "none"))
    with torch.no_grad():
        full, _ = decoder(y, enc)
        torch.testing.assert_close(run_in_pieces(decoder, y, enc, [2, 2, 3]), full, **TOL)
    for bridge in ("copy", "linear"):
        bridged = make_decoder(cell, **decoder_options(attention, bridge))
        with pytest.raises(ValueError, match="state=None"):
            bridged(y, enc)
        with pytest.raises(ValueError, match="state=None"):
            bridged.init_cache(enc, 4, 7)


def test_rnn_decoder_nonlinearity_reaches_the_recurrence():
    for attention in ("none", "additive"):  # the fused module and the cell stack
        decoder = make_decoder("rnn", nonlinearity="relu", attention=attention)
        modules = [m for m in decoder.modules() if isinstance(m, (torch.nn.RNN, torch.nn.RNNCell))]
        assert modules and all(m.nonlinearity == "relu" for m in modules)


def test_copy_bridge_passes_the_encoder_state():
    lstm_enc = make_encoder("lstm", layers=2)(*source())
    gru_enc = make_encoder("gru", layers=2)(*source())
    def state(cache, name):  # the cache holds a tuple of layers x (B, H)
        return torch.stack(cache[name], dim=1)  # (B, layers, H), as the encoder's state

    lstm_cache = make_decoder("lstm", layers=2, bridge="copy").init_cache(lstm_enc, 4, 7)
    torch.testing.assert_close(state(lstm_cache, "h"), lstm_enc.state[0])
    torch.testing.assert_close(state(lstm_cache, "c"), lstm_enc.state[1])
    gru_cache = make_decoder("gru", layers=2, bridge="copy").init_cache(lstm_enc, 4, 7)
    torch.testing.assert_close(state(gru_cache, "h"), lstm_enc.state[0])  # h of an LSTM state
    cache = make_decoder("lstm", layers=2, bridge="copy").init_cache(gru_enc, 4, 7)
    torch.testing.assert_close(state(cache, "h"), gru_enc.state)
    assert torch.all(state(cache, "c") == 0)  # a GRU has no cell state to give


@pytest.mark.parametrize(
    ("enc_layers", "dec_layers", "expected"),
    [(3, 2, [1, 2]), (2, 2, [0, 1]), (2, 3, [0, 0, 1]), (1, 3, [0, 0, 0])],
)
def test_linear_bridge_maps_top_encoder_layers_onto_decoder_layers(enc_layers, dec_layers, expected):
    decoder = make_decoder("gru", layers=dec_layers, bridge="linear")
    state = torch.arange(enc_layers, dtype=torch.float32)[None, :, None].expand(2, -1, D)
    aligned = decoder.bridge._align(state)  # (2, dec_layers, D), each layer filled with its source
    assert aligned[0, :, 0].tolist() == expected


def test_copy_bridge_refuses_other_layer_counts():
    enc = encode("lstm")  # 2 layers
    decoder = make_decoder("lstm", layers=3, bridge="copy")
    with pytest.raises(ValueError, match="2 layers.*3 layers"):
        decoder(target(), enc)


@pytest.mark.parametrize("attention", ["dot", "general", "additive"])
def test_record_attention_weights(attention):
    enc = encode("rnn")
    decoder = make_decoder("gru", **decoder_options(attention, "none"))
    y = target()
    with torch.no_grad():
        decoder(y, enc)
        assert decoder.attention_weights is None  # opt-in only
        decoder.record_attention = True
        decoder(y, enc)
    weights = decoder.attention_weights
    assert weights.shape == (4, 7, 6)
    real = enc.mask[:, None, :].expand_as(weights)
    assert torch.all(weights[~real] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(4, 7), **TOL)
    with torch.no_grad():
        decoder(y[:, :2], enc, decoder.init_cache(enc, 4, 7))
    assert decoder.attention_weights.shape == (4, 2, 6)


@pytest.mark.parametrize("dec_cell", CELLS)
@pytest.mark.parametrize("enc_cell", CELLS)
def test_forward_backward_every_pair(enc_cell, dec_cell):
    encoder = make_encoder(enc_cell, layers=2, hidden_size=H, dropout=0.1, bidirectional=True)
    attention = {"rnn": "dot", "lstm": "general", "gru": "additive"}[enc_cell]
    decoder = make_decoder(dec_cell, **decoder_options(attention, "linear"), dropout=0.1)
    encoder.train()
    decoder.train()
    x, mask = source()
    hidden, _ = decoder(target(), encoder(x, mask))
    hidden.square().mean().backward()
    for name, parameter in [*encoder.named_parameters(), *decoder.named_parameters()]:
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name


def test_dropout_only_in_training():
    encoder = make_encoder("lstm", layers=3, dropout=0.5)
    decoder = make_decoder("gru", layers=3, dropout=0.5, attention="additive", bridge="linear")
    x, mask = source()
    y = target()

    def run():
        with torch.no_grad():
            return decoder(y, encoder(x, mask))[0]

    torch.testing.assert_close(run(), run(), atol=0, rtol=0)
    encoder.train()
    decoder.train()
    assert not torch.allclose(run(), run())
