"""The conformance suite over every registered encoder, decoder and encoder x decoder pair."""

from __future__ import annotations

import pytest

from seqkit.plugins import make_plugin_manager
from seqkit.testing import conformance_checks, run_check

CHECKS = list(conformance_checks(make_plugin_manager()))


def test_every_builtin_architecture_is_checked():
    subjects = {check.subject for check in CHECKS}
    for name in ("rnn", "lstm", "gru", "transformer"):
        assert f"encoder {name}" in subjects and f"decoder {name}" in subjects
    assert "encoder lstm + decoder transformer" in subjects


@pytest.mark.parametrize("check", CHECKS, ids=[f"{c.subject}: {c.name}" for c in CHECKS])
def test_conformance(check):
    outcome = run_check(check)
    assert outcome.status != "failed", outcome.detail
    if outcome.status == "unsupported":
        assert "language model" in check.subject, outcome.detail  # only LM use is optional


# -- the suite catches broken components --------------------------------------------------------

BROKEN = """
import torch
from seqkit import hookimpl
from seqkit.interfaces import Decoder, Encoder, EncoderOutput


class LeakyEncoder(Encoder):
    '''Mixes every position, padding included, into every output: breaks padding invariance.'''

    def __init__(self, d_model):
        super().__init__()
        self.d_model = d_model
        self.proj = torch.nn.Linear(d_model, d_model)

    def forward(self, x, mask):
        return EncoderOutput(self.proj(x) + x.mean(1, keepdim=True), mask)


class PeekingDecoder(Decoder):
    '''Each output sees the whole target: not causal; its cache forgets the past.'''

    def __init__(self, d_model):
        super().__init__()
        self.d_model = d_model
        self.proj = torch.nn.Linear(d_model, d_model)

    def forward(self, y, enc, cache=None):
        return self.proj(y) + y.mean(1, keepdim=True), cache

    def init_cache(self, enc, batch_size, max_len):
        return {}


@hookimpl
def register_encoders(register):
    register("leaky", lambda config, d_model: LeakyEncoder(d_model))


@hookimpl
def register_decoders(register):
    register("peeking", lambda config, d_model: PeekingDecoder(d_model))
"""


def others(keep: str) -> list[str]:
    """Every installed plugin but ``keep``: pairing with them would only cost time."""
    return [name for name in make_plugin_manager().plugins if name != keep]


@pytest.fixture
def broken_plugin(install_plugin):
    return install_plugin(BROKEN, dist="seqkit-broken", version="0.0.1", name="broken")


def test_the_suite_fails_a_leaky_encoder_and_a_peeking_decoder(broken_plugin):
    manager = make_plugin_manager(disable=others(broken_plugin))
    outcomes = {(c.subject, c.name): run_check(c) for c in conformance_checks(manager, "broken")
                if c.name != "overfit"}  # the peeking decoder ignores the source: slow to fail
    failed = {key for key, outcome in outcomes.items() if outcome.status == "failed"}
    assert ("encoder leaky", "encoder_padding_invariance") in failed
    assert ("decoder peeking (language model)", "decoder_causality") in failed
    assert ("decoder peeking (language model)", "decoder_incremental") in failed
    assert ("encoder leaky", "encoder_shapes") not in failed
    detail = outcomes[("encoder leaky", "encoder_padding_invariance")].detail
    assert "memory of real positions changed with extra padding" in detail


def test_plugins_check_cli_exit_status(broken_plugin):
    from click.testing import CliRunner

    from seqkit.cli import cli

    disable = [arg for name in others(broken_plugin) for arg in ("--disable-plugin", name)]
    result = CliRunner().invoke(cli, [*disable, "plugins", "check", "broken"])
    assert result.exit_code == 1
    assert "FAILED      encoder leaky: encoder_padding_invariance" in result.stdout
    assert result.stdout.strip().splitlines()[-1].endswith("unsupported")
    missing = CliRunner().invoke(cli, ["plugins", "check", "nope"])
    assert missing.exit_code == 2 and "no plugin named 'nope'" in missing.stderr
