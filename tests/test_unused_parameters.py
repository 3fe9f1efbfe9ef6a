"""The distributed rule handled by the trainer: parameters that get no gradient in a composition (a
Transformer decoder's cross-attention in a language model) are found once, and only then does
DistributedDataParallel look for unused parameters at every step."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from seqkit.config import Component, ModelConfig
from seqkit.distributed import DataParallel, Group, data_parallel, unused_parameters
from seqkit.model import ModelShape, build_model
from seqkit.plugins import make_plugin_manager

MANAGER = make_plugin_manager()


def model(kind: str):
    torch.manual_seed(0)
    options = MANAGER.get("decoder", "transformer").config_class(layers=1)
    encoder = Component("gru", MANAGER.get("encoder", "gru").config_class()) if kind == "seq2seq" else None
    config = ModelConfig(encoder=encoder, decoder=Component("transformer", options), d_model=16)
    shape = ModelShape(kind, source_vocab=9 if encoder else None, target_vocab=9)
    return build_model(config, shape, MANAGER).train()


@pytest.fixture
def one_process_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield Group(active=True)
    dist.destroy_process_group()


def steps(parallel, n: int = 3) -> None:
    optimizer = torch.optim.SGD(parallel.parameters(), lr=0.1)
    for _ in range(n):
        target = torch.randint(4, 9, (2, 5))
        parallel(None, None, target).float().square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()


def test_unused_parameters_names_cross_attention_of_a_language_model():
    unused, bad = unused_parameters(model("language_model"))
    assert unused and all(".cross." in name or "ln_2" in name for name in unused) and not bad
    assert unused_parameters(model("seq2seq")) == ([], [])


def test_the_probe_leaves_random_state_and_gradients_alone():
    lm = model("language_model")
    state = torch.random.get_rng_state()
    unused_parameters(lm)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(p.grad is None for p in lm.parameters())


def test_the_probe_leaves_buffers_alone():
    """A forward in training mode may update buffers (running statistics, counters): the probe's
    forward must not change the model that is then trained."""
    lm = model("language_model")
    lm.register_buffer("forwards", torch.zeros(()))
    lm.register_forward_pre_hook(lambda module, arguments: module.forwards.add_(1) and None)
    unused_parameters(lm)
    assert lm.forwards.item() == 0


def test_plain_ddp_fails_on_a_language_model_with_cross_attention(one_process_group):
    """What the trainer did before: the second step fails (the reason for the probe)."""
    with pytest.raises(RuntimeError, match="unused parameters|did not receive grad|finished reduction"):
        steps(DataParallel(model("language_model")))


def test_data_parallel_trains_a_language_model_with_cross_attention(one_process_group):
    parallel = data_parallel(model("language_model"), one_process_group)
    steps(parallel)
    assert parallel.find_unused_parameters


def test_data_parallel_keeps_the_fast_path_when_every_parameter_is_used(one_process_group):
    parallel = data_parallel(model("seq2seq"), one_process_group)
    assert not parallel.find_unused_parameters
