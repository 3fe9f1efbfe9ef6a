"""The eval-mode cached steps over plain tensors (seqkit_transformer.decode_step,
seqkit_recurrent.decode_step) and the packed weights under them (seqkit.packing): the same outputs
as the module path, taken only where the modules would compute the same, and packed copies that
follow the weights."""

from __future__ import annotations

import copy

import pytest
import torch
from generation_cases import make_model, sources
from torch import nn

import seqkit_recurrent.decoder as recurrent_module
import seqkit_transformer.decoder as decoder_module
from seqkit.generate import SearchConfig, generate
from seqkit.interfaces import EncoderOutput
from seqkit.packing import packed_weight
from seqkit.quantize import quantize_int8
from seqkit_recurrent.config import RecurrentDecoderConfig, RNNDecoderConfig
from seqkit_recurrent.decoder import build_decoder
from seqkit_transformer.config import TransformerDecoderConfig
from seqkit_transformer.decoder import TransformerDecoder

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py
D = 16


def count_steps(monkeypatch, module) -> list[int]:
    """Counts the calls of ``module``'s plain-tensor step."""
    calls = []
    real = module.cached_step

    def counted(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(module, "cached_step", counted)
    return calls


@pytest.fixture
def steps(monkeypatch) -> list[int]:
    return count_steps(monkeypatch, decoder_module)


def make_decoder(**overrides) -> TransformerDecoder:
    torch.manual_seed(0)
    config = TransformerDecoderConfig(**{"layers": 2, "heads": 4, "max_positions": 32, **overrides})
    return TransformerDecoder(config, D).eval()


def run(decoder, enc, y, chunks, beams=1):
    """Feed y (B, T, D) in ``chunks`` through a fresh cache; with beams, the cache's rows are
    made ``beams`` per source first (reorder_hypotheses, shared source state)."""
    rows = y.size(0)
    cache = decoder.init_cache(enc, rows, y.size(1))
    if beams > 1:
        cache = decoder.reorder_hypotheses(cache, torch.arange(rows).repeat_interleave(beams), None)
        y = y.repeat_interleave(beams, dim=0)
    out, start = [], 0
    for size in chunks:
        hidden, cache = decoder(y[:, start: start + size], enc, cache)
        out.append(hidden)
        start += size
    return torch.cat(out, dim=1)


def hooked(decoder) -> TransformerDecoder:
    """The same decoder, with a forward hook that changes nothing: it takes the module path."""
    twin = copy.deepcopy(decoder)
    twin.layers[-1].mlp.fc.register_forward_hook(lambda *args: None)
    return twin


@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("activation,bias", [("gelu", True), ("relu", False), ("silu", True)])
@pytest.mark.parametrize("cross", [True, False])
@pytest.mark.parametrize("beams", [1, 3])
@torch.no_grad()
def test_the_step_equals_the_module_path(steps, norm, activation, bias, cross, beams):
    decoder = make_decoder(norm=norm, activation=activation, bias=bias, cross_attention=cross)
    lengths = torch.tensor([5, 2])  # a padded memory
    enc = EncoderOutput(torch.randn(2, 5, D), torch.arange(5) < lengths[:, None]) if cross else None
    y = torch.randn(2, 6, D)
    chunks = [3, 1, 2]  # a prefill, single steps, a chunk
    fast = run(decoder, enc, y, chunks, beams)
    assert len(steps) == len(chunks)
    slow = run(hooked(decoder), enc, y, chunks, beams)
    assert len(steps) == len(chunks)  # the hooked decoder never took it
    torch.testing.assert_close(fast, slow, atol=2e-6, rtol=1e-6)  # GEMM summation order only
    full, _ = decoder(y.repeat_interleave(beams, dim=0), enc.index_select(
        torch.arange(2).repeat_interleave(beams)) if cross else None)
    torch.testing.assert_close(fast, full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("change", ["hook", "global_hook", "subclass", "int8", "record_attention",
                                    "training"])
@torch.no_grad()
def test_anything_the_step_would_not_honour_takes_the_module_path(steps, change):
    model = make_model({"name": "transformer", "layers": 2, "heads": 2, "dropout": 0.0})
    source, mask = sources()
    config = SearchConfig(max_len=5, min_len=5)
    expected = [row[0].tokens for row in generate(model, source, mask, config)]
    assert steps  # the plain model takes the step
    steps.clear()
    seen, undo = [], None
    if change == "hook":
        model.decoder.layers[0].attn.proj.register_forward_hook(lambda *args: seen.append(1))
    elif change == "global_hook":
        undo = nn.modules.module.register_module_forward_hook(lambda *args: seen.append(1))
    elif change == "subclass":
        class Scaled(nn.LayerNorm):  # a subclass: it may compute something else (here it records)
            def forward(self, x):
                seen.append(1)
                return super().forward(x)

        old = model.decoder.layers[1].ln_3
        model.decoder.layers[1].ln_3 = Scaled(old.normalized_shape)
        model.decoder.layers[1].ln_3.load_state_dict(old.state_dict())
    elif change == "int8":
        quantize_int8(model)  # in place: its Linears hold int8 weights, no float ``weight``
    elif change == "record_attention":
        model.decoder.record_attention = True
    try:
        if change == "training":
            model.train()  # dropout 0.0: the same tokens, through the model's own path
        found = [row[0].tokens for row in generate(model, source, mask, config)]
    finally:
        if undo is not None:
            undo.remove()
    assert not steps, change
    if change in ("hook", "global_hook", "subclass"):
        assert seen, "the module's own call ran"
    if change != "int8":
        assert found == expected


@torch.no_grad()
def test_packed_weights_are_made_once_and_follow_the_weights():
    linear = nn.Linear(4, 3)
    packed = packed_weight(linear)
    assert packed.shape == (4, 3) and packed.is_contiguous()
    torch.testing.assert_close(packed, linear.weight.t(), rtol=0, atol=0)
    assert packed_weight(linear) is packed  # kept
    linear.weight.mul_(2.0)  # in place, as an optimizer step: the version moves
    torch.testing.assert_close(packed_weight(linear), linear.weight.t(), rtol=0, atol=0)
    linear.weight.data = torch.randn(3, 4)  # new storage
    torch.testing.assert_close(packed_weight(linear), linear.weight.t(), rtol=0, atol=0)


@torch.no_grad()
def test_weights_made_under_inference_mode_are_used_as_they_are():
    with torch.inference_mode():
        linear = nn.Linear(4, 3)  # no version counter to tell a change
        linear.weight.mul_(2.0)
        assert packed_weight(linear).data_ptr() == linear.weight.data_ptr()  # a view, not a copy
        torch.testing.assert_close(packed_weight(linear), linear.weight.t(), rtol=0, atol=0)
        linear.weight.mul_(2.0)
        torch.testing.assert_close(packed_weight(linear), linear.weight.t(), rtol=0, atol=0)


def test_decoding_after_training_steps_uses_the_new_weights():
    model = make_model({"name": "transformer", "layers": 2, "heads": 2, "dropout": 0.0})
    source, mask = sources()
    config = SearchConfig(max_len=6, min_len=6)
    generate(model, source, mask, config)  # packs the weights
    assert any("_seqkit_packed" in vars(m) for m in model.modules())
    model.train()
    assert not any("_seqkit_packed" in vars(m) for m in model.modules())  # released
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(2):
        logits = model(source, mask, torch.randint(4, 40, (5, 6)))
        logits.logsumexp(-1).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    found = generate(model, source, mask, config)
    fresh = generate(copy.deepcopy(model), source, mask, config)  # packs anew from these weights
    recomputed = generate(model, source, mask, SearchConfig(max_len=6, min_len=6, use_cache=False))
    assert [r[0].tokens for r in found] == [r[0].tokens for r in fresh] == [r[0].tokens for r in recomputed]
    for a, b in zip(found, recomputed, strict=True):
        assert a[0].score == pytest.approx(b[0].score, rel=1e-5)


@pytest.mark.parametrize("module_path", [False, True])
@torch.no_grad()
def test_reordering_copies_only_the_written_positions_and_never_reads_past_them(module_path):
    decoder = make_decoder()
    if module_path:
        decoder = hooked(decoder)
    enc = EncoderOutput(torch.randn(2, 5, D), torch.arange(5) < torch.tensor([[5], [3]]))
    y = torch.randn(2, 6, D)
    cache = decoder.init_cache(enc, 2, 8)
    _, cache = decoder(y[:, :3], enc, cache)
    index = torch.tensor([1, 1, 0])  # hypotheses of sources 1, 1, 0
    moved = decoder.reorder_cache(cache, index)
    for layer, old in zip(moved["layers"], cache["layers"], strict=True):
        for name in ("k", "v"):
            assert layer[name].shape == (3, *old[name].shape[1:])
            torch.testing.assert_close(layer[name][:, :, :3], old[name][index, :, :3], rtol=0, atol=0)
            layer[name][:, :, 3:] = float("nan")  # what was not copied is never read
    rest, _ = decoder(y[index, 3:], enc.index_select(index), moved)
    full, _ = decoder(y[index], enc.index_select(index))
    torch.testing.assert_close(rest, full[:, 3:], atol=1e-5, rtol=0)


@pytest.mark.parametrize("cell,options", [("lstm", {}), ("gru", {}), ("rnn", {"nonlinearity": "relu"})])
@pytest.mark.parametrize("attention", ["general", "dot", "none", "additive"])
@pytest.mark.parametrize("beams", [1, 2])
@torch.no_grad()
def test_the_recurrent_step_equals_the_module_path(monkeypatch, cell, options, attention, beams):
    steps = count_steps(monkeypatch, recurrent_module)
    config = (RNNDecoderConfig if cell == "rnn" else RecurrentDecoderConfig)(
        layers=2, attention=attention, **options)
    torch.manual_seed(0)
    decoder = build_decoder(cell, config, D).eval()
    lengths = torch.tensor([5, 2, 4])
    enc = EncoderOutput(torch.randn(3, 5, D), torch.arange(5) < lengths[:, None])
    y = torch.randn(3, 4, D)
    fast = run(decoder, enc, y, [1, 1, 2], beams)  # single steps, then a chunk (the module path's)
    assert len(steps) == (2 if attention != "additive" else 0)  # Bahdanau: always the module path
    twin = copy.deepcopy(decoder)
    twin.output.register_forward_hook(lambda *args: None)
    slow = run(twin, enc, y, [1, 1, 2], beams)
    assert len(steps) == (2 if attention != "additive" else 0)
    torch.testing.assert_close(fast, slow, atol=2e-6, rtol=1e-6)


@pytest.mark.parametrize("part", ["target_embedding", "head"])
@torch.no_grad()
def test_hooks_on_the_embedding_and_the_head_still_run(part):
    model = make_model({"name": "lstm", "layers": 2})
    source, mask = sources()
    calls = []
    getattr(model, part).register_forward_hook(lambda *args: calls.append(1))
    config = SearchConfig(max_len=5, min_len=5)
    generate(model, source, mask, config)
    assert len(calls) == 1 + 5  # BOS, then each new token but the last (end of sequence)
