"""The example plugin passes seqkit's conformance suite, and glr's parallel scan is its recurrence."""

import pytest
import torch
from seqkit import ConfigError, make_plugin_manager
from seqkit.testing import run_conformance

from seqkit_example.conv import ConvEncoder, ConvEncoderConfig
from seqkit_example.glr import GLRDecoder, GLRDecoderConfig, gated_recurrence


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The models here are tiny: with several OpenMP threads on a busy machine, threads wait on
    each other far longer than they compute (the suite ran 10-100x slower in our runs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_conformance():
    manager = make_plugin_manager()
    info = manager.plugins.get("seqkit_example")
    assert info is not None and info.status == "ok", "seqkit_example is not installed or broken"
    assert info.registered["encoder"] == ["conv"] and info.registered["decoder"] == ["glr"]
    outcomes = run_conformance(manager, "seqkit_example")
    failed = [f"{o.check.subject}: {o.check.name}: {o.detail}" for o in outcomes if o.status == "failed"]
    assert outcomes and not failed, "\n".join(failed)


def naive_recurrence(gate_logits, values, state):
    """h_t = a_t * h_{t-1} + (1 - a_t) * u_t, one step at a time."""
    a, outputs = torch.sigmoid(gate_logits), []
    for t in range(values.size(1)):
        state = a[:, t] * state + (1 - a[:, t]) * values[:, t]
        outputs.append(state)
    return torch.stack(outputs, dim=1)


@pytest.mark.parametrize("length", [1, 2, 5, 64, 1000])
def test_scan_equals_a_loop_over_time(length):
    generator = torch.Generator().manual_seed(length)
    # gate logits up to +-12: decays from ~0 to ~1, where a log-space cumulative sum loses precision
    gate_logits = 4 * torch.randn(3, length, 8, generator=generator)
    values, state = 3 * torch.randn(3, length, 8, generator=generator), torch.randn(3, 8, generator=generator)
    expected = naive_recurrence(gate_logits.double(), values.double(), state.double())
    torch.testing.assert_close(gated_recurrence(gate_logits, values, state).double(), expected,
                               atol=1e-5, rtol=1e-5)


def test_decoder_full_pass_equals_step_by_step():
    """Decoding one position at a time runs the recurrence formula itself (no scan)."""
    torch.manual_seed(0)
    decoder = GLRDecoder(GLRDecoderConfig(layers=2, dropout=0.0), d_model=16).eval()
    y = torch.randn(2, 50, 16)
    with torch.no_grad():
        full, _ = decoder(y, None)
        cache, steps = decoder.init_cache(None, 2, 50), []
        for t in range(50):
            hidden, cache = decoder(y[:, t:t + 1], None, cache)
            steps.append(hidden)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("factory, config_class, key, value", [
    (ConvEncoder, ConvEncoderConfig, "kernel_size", 4),
    (ConvEncoder, ConvEncoderConfig, "activation", "relu"),
    (ConvEncoder, ConvEncoderConfig, "layers", 0),
    (GLRDecoder, GLRDecoderConfig, "dropout", 1.0),
    (GLRDecoder, GLRDecoderConfig, "layers", True),
])
def test_invalid_options_name_their_key(factory, config_class, key, value):
    with pytest.raises(ConfigError) as error:
        config_class(**{key: value})
    assert error.value.key == key
    config = config_class()
    setattr(config, key, value)  # the factory checks too: a config can change after it is made
    with pytest.raises(ConfigError) as error:
        factory(config, 16)
    assert error.value.key == key
