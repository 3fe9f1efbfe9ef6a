"""The conformance suite: checks any registered encoder, decoder, task or backend against the
contract.

A plugin author runs it on their own components (``seqkit plugins check NAME``, or
``run_conformance(manager, plugin=NAME)`` from their tests); seqkit's own tests run it over every
registered component. Each check raises AssertionError with what differed; small sizes, CPU, fp32.

Checks per encoder: shapes, padding invariance, safetensors round trip, gradients as a classifier.
Per decoder: shapes, causality, incremental == full, cache reorder == recompute, round trip,
gradients (with enc=None when the decoder supports language modelling).
Per encoder x decoder pair: incremental == full, source padding invariance through the decoder,
cache reorder, beams sharing source state (decoders with ``shares_source``), gradients, and a
tiny seq2seq model that overfits one fixed batch.
Per task: seqkit.testing_tasks. Per backend: seqkit.testing_backends. Gradients (the distributed
rule): seqkit.testing_gradients. Which checks run, and with which counterparts: seqkit.testing_suite.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from safetensors.torch import load, save
from torch import Tensor

from seqkit.config import Component, ModelConfig
from seqkit.interfaces import Decoder, Encoder, EncoderOutput, iter_tensors
from seqkit.model import ModelShape, build_model
from seqkit.plugins import PluginManager, Registration

D_MODEL, BATCH, SOURCE_LEN, TARGET_LEN = 16, 3, 7, 6
TOLERANCE = {"atol": 1e-5, "rtol": 1e-5}
OVERFIT_STEPS, OVERFIT_DROP = 300, 0.9


def call_checked(who: str, what: str, run: Callable[[], Any]) -> Any:
    """``run()``; an exception other than a failed check becomes an AssertionError in the author's
    terms, naming ``who`` (the component) and ``what`` ran, instead of a traceback from its code."""
    try:
        return run()
    except AssertionError:
        raise
    except Exception as exc:
        text = (str(exc).splitlines() or [""])[0]
        raise AssertionError(f"{who}: {what} raised {type(exc).__name__}: {text}") from None


class Unsupported(Exception):
    """The component declines an optional feature (a decoder that needs an encoder)."""


@dataclass
class Check:
    """One check of one component or pair: ``run()`` raises AssertionError on failure."""

    name: str
    subject: str
    run: Callable[[], None]


@dataclass
class Outcome:
    check: Check
    status: str  # passed | failed | unsupported | warning
    detail: str = ""


# -- building components ------------------------------------------------------------------------


def options(registration: Registration) -> object | None:
    """Default options, made small and deterministic: 2 layers where the component has a
    ``layers`` option, no ``dropout``. The contract does not depend on depth."""
    if registration.config_class is None:
        return None
    config = registration.config_class()
    for name, value in (("layers", 2), ("dropout", 0.0)):
        if isinstance(getattr(config, name, None), (int, float)):
            setattr(config, name, min(getattr(config, name), value))
    return config


def build(registration: Registration, seed: int = 0) -> torch.nn.Module:
    """A fresh component with small default options, in eval mode, seeded."""
    torch.manual_seed(seed)
    return registration.factory(options(registration), D_MODEL).eval()


def _inputs(seed: int, batch: int = BATCH, length: int = SOURCE_LEN) -> tuple[Tensor, Tensor]:
    """Random embedded sequences (B, L, D) with a mask of ragged lengths (row 0 full)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, length, D_MODEL, generator=generator)
    lengths = torch.tensor([length - (i % length) for i in range(batch)]).clamp(min=1)
    mask = torch.arange(length)[None, :] < lengths[:, None]
    return x, mask


def _encode(encoder: Encoder | None, seed: int = 1) -> EncoderOutput | None:
    if encoder is None:
        return None
    x, mask = _inputs(seed)
    with torch.no_grad():
        return encoder(x, mask)


def _close(actual: Tensor, expected: Tensor, what: str) -> None:
    try:
        torch.testing.assert_close(actual, expected, **TOLERANCE)
    except AssertionError as exc:
        raise AssertionError(f"{what}: {str(exc).splitlines()[0]} "
                             f"(max abs diff {(actual - expected).abs().max().item():.2e})") from None


def _run_decoder(decoder: Decoder, y: Tensor, enc: EncoderOutput | None) -> Tensor:
    try:
        with torch.no_grad():
            return decoder(y, enc)[0]
    except ValueError as exc:
        if enc is None:
            raise Unsupported(f"decoder needs an encoder: {exc}") from None
        raise


def _incremental(decoder: Decoder, y: Tensor, enc: EncoderOutput | None, chunks: list[int]) -> Tensor:
    cache = decoder.init_cache(enc, y.size(0), y.size(1))
    outputs, start = [], 0
    with torch.no_grad():
        for size in chunks:
            hidden, cache = decoder(y[:, start:start + size], enc, cache)
            outputs.append(hidden)
            start += size
    return torch.cat(outputs, dim=1)


# -- encoder checks -----------------------------------------------------------------------------


def encoder_shapes(reg: Registration) -> None:
    encoder = build(reg)
    assert isinstance(encoder, Encoder), f"factory built {type(encoder).__name__}, not an Encoder"
    x, mask = _inputs(0)
    with torch.no_grad():
        out = encoder(x, mask)
    assert isinstance(out, EncoderOutput), f"forward returned {type(out).__name__}"
    assert out.memory.shape == (BATCH, SOURCE_LEN, D_MODEL), f"memory shape {tuple(out.memory.shape)}"
    assert torch.equal(out.mask, mask), "the output mask differs from the input mask"
    for tensor in iter_tensors(out.state):
        assert tensor.size(0) == BATCH, f"state is not batch-first: {tuple(tensor.shape)}"
    assert torch.isfinite(out.memory[mask]).all(), "non-finite memory on real positions"


def encoder_padding_invariance(reg: Registration) -> None:
    encoder = build(reg)
    x, mask = _inputs(0)
    extra = 4
    padded = torch.cat([x, 100 * torch.randn(BATCH, extra, D_MODEL)], dim=1)
    padded[~torch.cat([mask, torch.zeros(BATCH, extra, dtype=torch.bool)], 1)] = 55.0  # garbage
    padded_mask = torch.cat([mask, torch.zeros(BATCH, extra, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        out, out_padded = encoder(x, mask), encoder(padded, padded_mask)
    _close(out_padded.memory[:, :SOURCE_LEN][mask], out.memory[mask],
           "memory of real positions changed with extra padding")
    for a, b in zip(iter_tensors(out.state), iter_tensors(out_padded.state), strict=True):
        _close(b, a, "final state changed with extra padding")


def round_trip(reg: Registration) -> None:
    """Weights survive safetensors: a differently seeded module loaded from them gives the same
    outputs (shared tensors are handled by saving the state dict without duplicates)."""
    original, other = build(reg, seed=0), build(reg, seed=1)
    state = {k: v.contiguous() for k, v in _dedup(original.state_dict()).items()}
    loaded = load(save(state))
    missing, unexpected = other.load_state_dict(loaded, strict=False)
    assert not unexpected, f"unexpected keys after round trip: {unexpected}"
    assert set(missing) <= set(original.state_dict()) - set(state), f"missing keys: {missing}"
    if isinstance(original, Encoder):
        x, mask = _inputs(0)
        with torch.no_grad():
            _close(other(x, mask).memory[mask], original(x, mask).memory[mask], "memory after reload")
    else:
        y, _ = _inputs(2, length=TARGET_LEN)
        enc = _sample_memory()
        try:
            expected = _run_decoder(original, y, enc)
        except (ValueError, Unsupported):
            return
        _close(_run_decoder(other, y, enc), expected, "decoder output after reload")


def _dedup(state: dict[str, Tensor]) -> dict[str, Tensor]:
    seen, out = set(), {}
    for key, tensor in state.items():
        ident = (tensor.data_ptr(), tensor.shape, tensor.stride()) if tensor.numel() else key
        if ident not in seen:
            seen.add(ident)
            out[key] = tensor
    return out


def _sample_memory() -> EncoderOutput:
    memory, mask = _inputs(5)
    return EncoderOutput(memory, mask, None)


# -- decoder checks (enc is an encoder registration, or None for a language model) ---------------


def decoder_shapes(dec: Registration, enc: Registration | None) -> None:
    decoder = build(dec)
    assert isinstance(decoder, Decoder), f"factory built {type(decoder).__name__}, not a Decoder"
    memory = _encode(build(enc, seed=3) if enc else None)
    y, _ = _inputs(2, length=TARGET_LEN)
    hidden = _run_decoder(decoder, y, memory)
    assert hidden.shape == (BATCH, TARGET_LEN, D_MODEL), f"hidden shape {tuple(hidden.shape)}"
    assert torch.isfinite(hidden).all(), "non-finite decoder output"


def decoder_causality(dec: Registration, enc: Registration | None) -> None:
    decoder = build(dec)
    memory = _encode(build(enc, seed=3) if enc else None)
    y, _ = _inputs(2, length=TARGET_LEN)
    full = _run_decoder(decoder, y, memory)
    for t in range(TARGET_LEN - 1):
        changed = y.clone()
        changed[:, t + 1:] = torch.randn_like(changed[:, t + 1:])
        _close(_run_decoder(decoder, changed, memory)[:, :t + 1], full[:, :t + 1],
               f"outputs up to position {t} depend on later inputs")


def decoder_incremental(dec: Registration, enc: Registration | None) -> None:
    decoder = build(dec)
    memory = _encode(build(enc, seed=3) if enc else None)
    y, _ = _inputs(2, length=TARGET_LEN)
    full = _run_decoder(decoder, y, memory)
    _close(_incremental(decoder, y, memory, [1] * TARGET_LEN), full, "token-by-token decoding")
    _close(_incremental(decoder, y, memory, [2, 1, 3]), full, "decoding in chunks of 2, 1, 3")


def decoder_reorder(dec: Registration, enc: Registration | None) -> None:
    """Reordering a cache (beam search) or dropping rows (finished hypotheses) then continuing
    equals decoding the reordered batch from scratch."""
    decoder = build(dec)
    memory = _encode(build(enc, seed=3) if enc else None)
    y, _ = _inputs(2, length=TARGET_LEN)
    _run_decoder(decoder, y, memory)  # raises Unsupported for LM-less decoders
    for index in (torch.tensor([2, 0, 1]), torch.tensor([1, 1, 0]), torch.tensor([2])):
        prefix = 3
        cache = decoder.init_cache(memory, BATCH, TARGET_LEN)
        with torch.no_grad():
            _, cache = decoder(y[:, :prefix], memory, cache)
            cache = decoder.reorder_cache(cache, index)
            picked = memory.index_select(index) if memory is not None else None
            continued, _ = decoder(y[index, prefix:], picked, cache)
            expected = decoder(y[index], picked)[0][:, prefix:]
        _close(continued, expected, f"decoding after reorder_cache({index.tolist()})")


def decoder_shared_source(dec: Registration, enc: Registration) -> None:
    """For a decoder that shares source state between beams (``shares_source``): beams made by
    ``reorder_hypotheses`` (2 hypotheses per source, the source part not copied) and a source
    leaving the batch continue as decoding each hypothesis's own batch from scratch."""
    decoder = build(dec)
    if not getattr(decoder, "shares_source", False):
        raise Unsupported("the decoder keeps no source state apart (shares_source is False): beams "
                          "copy its whole cache, which is correct")
    memory = _encode(build(enc, seed=3))
    y, _ = _inputs(2, length=TARGET_LEN)
    prefix, beams = 2, 2
    with torch.no_grad():
        cache = decoder.init_cache(memory, BATCH, TARGET_LEN)
        _, cache = decoder(y[:, :prefix], memory, cache)
        # beams: hypotheses 2i, 2i+1 of source i, their prefixes picked from the source's rows
        index = torch.arange(BATCH).repeat_interleave(beams)
        cache = decoder.reorder_hypotheses(cache, index, None)
        grown = y[index, prefix:prefix + 2] + 0.1 * torch.arange(beams).repeat(BATCH)[:, None, None]
        continued, cache = decoder(grown, memory, cache)
        whole = torch.cat([y[index, :prefix], grown], 1)
        expected = decoder(whole, memory.index_select(index))[0][:, prefix:]
        _close(continued, expected, "beams sharing their source's state after reorder_hypotheses")
        # source 1 leaves, and the beams of the others swap
        sources = torch.tensor([0, 2])
        index = torch.tensor([1, 0, 5, 4])
        cache = decoder.reorder_hypotheses(cache, index, sources)
        last = y[index // beams, prefix + 2:prefix + 3]
        continued, _ = decoder(last, memory.index_select(sources), cache)
        picked = memory.index_select(index // beams)
        expected = decoder(torch.cat([whole[index], last], 1), picked)[0][:, -1:]
        _close(continued, expected, "after a source left the batch (reorder_hypotheses with sources)")


def source_padding_invariance(dec: Registration, enc: Registration) -> None:
    """Extra padding of the source leaves the decoder's outputs unchanged."""
    encoder, decoder = build(enc, seed=3), build(dec)
    x, mask = _inputs(1)
    extra = torch.zeros(BATCH, 3, dtype=torch.bool)
    padded = torch.cat([x, 9 * torch.randn(BATCH, 3, D_MODEL)], 1)
    y, _ = _inputs(2, length=TARGET_LEN)
    with torch.no_grad():
        expected = decoder(y, encoder(x, mask))[0]
        actual = decoder(y, encoder(padded, torch.cat([mask, extra], 1)))[0]
    _close(actual, expected, "decoder output changed with extra source padding")


def overfit(dec: Registration, enc: Registration) -> None:
    """A tiny seq2seq model learns to reverse one fixed batch: loss falls by at least 90%."""
    torch.manual_seed(0)
    vocab, length, batch = 12, 6, 8
    config = ModelConfig(encoder=Component(enc.name, options(enc)),
                         decoder=Component(dec.name, options(dec)), d_model=32, embedding_dropout=0.0)
    shape = ModelShape("seq2seq", source_vocab=vocab, target_vocab=vocab)
    model = build_model(config, shape, PluginManager.from_registrations([enc, dec]))
    source = torch.randint(3, vocab, (batch, length))
    target = torch.cat([torch.ones(batch, 1, dtype=torch.long), source.flip(1)], 1)  # bos=1
    mask = torch.ones(batch, length, dtype=torch.bool)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(OVERFIT_STEPS):
        logits = model(source, mask, target[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), target[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if loss.item() <= (1 - OVERFIT_DROP) * losses[0]:
            return
    raise AssertionError(f"loss fell from {losses[0]:.3f} to {min(losses):.3f} in {OVERFIT_STEPS} "
                         f"steps, less than {OVERFIT_DROP:.0%}")


# -- the suite (assembled in seqkit.testing_suite, with the task, backend and gradient checks) ----

ENCODER_CHECKS = [encoder_shapes, encoder_padding_invariance, round_trip]
DECODER_CHECKS = [decoder_shapes, decoder_causality, decoder_incremental, decoder_reorder]
PAIR_CHECKS = [decoder_incremental, decoder_reorder, decoder_shared_source, source_padding_invariance,
               overfit]


def conformance_checks(manager: PluginManager, plugin: str | None = None,
                       counterparts: list[Registration] | None = None) -> Iterator[Check]:
    """Every check for the components of ``plugin`` (all plugins when None): encoders, decoders,
    tasks and backends alone, and each encoder or decoder paired with the registered counterparts
    (only those in ``counterparts`` when given)."""
    from seqkit.testing_suite import conformance_checks as checks

    return checks(manager, plugin, counterparts)


def run_check(check: Check) -> Outcome:
    """Run one check on one thread: the models are tiny, and more threads only wait on each
    other (20x slower seen on a loaded 2-core machine). A check that finds parameters without a
    gradient is a "warning" (see seqkit.testing_gradients), one that declines a feature
    "unsupported"."""
    from seqkit.testing_gradients import NoGradient

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        check.run()
    except Unsupported as exc:
        return Outcome(check, "unsupported", str(exc))
    except NoGradient as exc:
        return Outcome(check, "warning", str(exc))
    except Exception as exc:  # a crashing component fails its check, the suite goes on
        text = str(exc).splitlines()[0] if str(exc) else ""
        return Outcome(check, "failed", f"{type(exc).__name__}: {text}" if not isinstance(
            exc, AssertionError) else text)
    finally:
        torch.set_num_threads(threads)
    return Outcome(check, "passed")


def run_conformance(manager: PluginManager, plugin: str | None = None) -> list[Outcome]:
    """Run every check for ``plugin`` (or all plugins), pairing its encoders and decoders only with
    healthy counterparts (see ``seqkit.testing_suite.check_plugin``, which also says what it
    skipped)."""
    from seqkit.testing_suite import check_plugin

    return check_plugin(manager, plugin).outcomes


__all__ = ["Check", "Outcome", "Unsupported", "conformance_checks", "run_check", "run_conformance"]
