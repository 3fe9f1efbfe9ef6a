"""Model composition from config: every encoder x decoder pair, LMs, classifiers, regressors."""

from __future__ import annotations

import itertools

import pytest
import torch

from seqkit import ConfigError
from seqkit.config import load_config
from seqkit.model import ModelShape, build_model, count_parameters
from seqkit.plugins import make_plugin_manager

MANAGER = make_plugin_manager()
BUILTINS = ["rnn", "lstm", "gru", "transformer"]
SMALL = {"rnn": {}, "lstm": {}, "gru": {}, "transformer": {"layers": 1, "heads": 2}}
VOCAB = 11


def model_config(encoder=None, decoder=None, **model):
    data = {"model": {"d_model": 16, **model}}
    if encoder:
        data["model"]["encoder"] = {"name": encoder, **SMALL.get(encoder, {})}
    if decoder:
        data["model"]["decoder"] = {"name": decoder, **SMALL.get(decoder, {})}
    return load_config(data, manager=MANAGER).model


def batch(features: int | None = None):
    torch.manual_seed(0)
    source = torch.randn(3, 5, features) if features else torch.randint(1, VOCAB, (3, 5))
    mask = torch.tensor([[1] * 5, [1] * 3 + [0] * 2, [1] + [0] * 4], dtype=torch.bool)
    return source, mask, torch.randint(1, VOCAB, (3, 4))


@pytest.mark.parametrize(("encoder", "decoder"), list(itertools.product(BUILTINS, BUILTINS)))
def test_every_pair_builds_runs_forward_and_backward(encoder, decoder):
    shape = ModelShape("seq2seq", source_vocab=VOCAB, target_vocab=VOCAB)
    model = build_model(model_config(encoder, decoder), shape, MANAGER)
    source, mask, target = batch()
    logits = model(source, mask, target)
    assert logits.shape == (3, 4, VOCAB)
    logits.logsumexp(-1).mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.encoder.training  # the build's dry run left train mode as it was


@pytest.mark.parametrize("encoder", BUILTINS)
def test_float_feature_sources(encoder):
    shape = ModelShape("seq2seq", source_features=4, target_vocab=VOCAB)
    model = build_model(model_config(encoder, "transformer"), shape, MANAGER)
    source, mask, target = batch(features=4)
    assert model(source, mask, target).shape == (3, 4, VOCAB)


@pytest.mark.parametrize("decoder", BUILTINS)
def test_language_model_is_a_decoder_alone(decoder):
    options = {} if decoder == "transformer" else {"attention": "none"}
    data = {"model": {"d_model": 16, "decoder": {"name": decoder, **SMALL[decoder], **options}}}
    config = load_config(data, manager=MANAGER).model
    model = build_model(config, ModelShape("language_model", target_vocab=VOCAB), MANAGER)
    assert model.encoder is None and model.source_embedding is None
    assert model(target=batch()[2]).shape == (3, 4, VOCAB)


@pytest.mark.parametrize("pool", ["mean", "last", "first"])
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_encoder_with_pooling_head_ignores_padding(kind, pool):
    shape = ModelShape(kind, source_features=4, num_outputs=3 if kind == "classifier" else 1)
    model = build_model(model_config("lstm", pool=pool, embedding_dropout=0.0), shape, MANAGER).eval()
    source, mask, _ = batch(features=4)
    out = model(source, mask)
    assert out.shape == (3, shape.num_outputs)
    garbage = source.clone()
    garbage[~mask] = 1e3
    torch.testing.assert_close(model(garbage, mask), out)


def test_pooling_picks_the_right_positions():
    shape = ModelShape("classifier", source_vocab=VOCAB, num_outputs=2)
    model = build_model(model_config("gru"), shape, MANAGER)
    memory = torch.arange(15.0).reshape(1, 5, 3)
    enc = type("Enc", (), {"memory": memory, "mask": torch.tensor([[1, 1, 1, 0, 0]]).bool()})
    expected = {"first": memory[0, 0], "last": memory[0, 2], "mean": memory[0, :3].mean(0)}
    for pool, vector in expected.items():
        model.pool = pool
        torch.testing.assert_close(model.pooled(enc)[0], vector)


def test_tied_and_shared_embeddings_count_once():
    shape = ModelShape("seq2seq", source_vocab=VOCAB, target_vocab=VOCAB)
    tied = build_model(model_config("gru", "gru", share_embeddings=True), shape, MANAGER)
    assert tied.head.weight is tied.target_embedding.weight is tied.source_embedding.weight
    untied = build_model(model_config("gru", "gru", tie_embeddings=False), shape, MANAGER)
    assert untied.head.weight is not untied.target_embedding.weight
    assert count_parameters(untied) - count_parameters(tied) == 2 * VOCAB * 16


@pytest.mark.parametrize(
    ("data", "kind", "expected"),
    [
        ({"encoder": {"name": "lsmt"}}, "classifier",
         "model.encoder.name: unknown encoder 'lsmt'; available: "),
        ({"encoder": {"name": "transformer", "heads": 5}, "decoder": {"name": "gru"}}, "seq2seq",
         "model.encoder.heads: "),
        ({"encoder": {"name": "transformer", "heads": 2}, "decoder": {"name": "gru", "bridge": "copy"}},
         "seq2seq", "model.decoder: "),
        ({"encoder": {"name": "gru"}}, "seq2seq", "model.decoder: a seq2seq model needs a"),
        ({"encoder": {"name": "gru"}, "decoder": {"name": "gru"}}, "classifier",
         "model.decoder: a classifier model has no decoder"),
        ({"decoder": {"name": "gru"}}, "language_model", "model.decoder: "),
    ],
)
def test_bad_models_name_the_key_path(data, kind, expected):
    shape = ModelShape(kind, source_vocab=VOCAB, target_vocab=VOCAB, num_outputs=2)
    with pytest.raises(ConfigError) as info:
        config = load_config({"model": {"d_model": 16, **data}}, manager=MANAGER).model
        build_model(config, shape, MANAGER)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_share_embeddings_needs_one_vocabulary():
    shape = ModelShape("seq2seq", source_vocab=VOCAB, target_vocab=VOCAB + 1)
    with pytest.raises(ConfigError, match="model.share_embeddings"):
        build_model(model_config("gru", "gru", share_embeddings=True), shape, MANAGER)
