"""Compiled decoding (``SearchConfig(compile=True)``, seqkit.compiled_decode): torch.compile of the
Transformer's decode step over its static cache holds across a mixed workload (prefill and single
steps, padded and unpadded sources, greedy and beam, prompts, batch sizes changing as rows finish,
one source position), gives eager decoding's outputs, and never falls back to eager without a word.

The graphs are counted with a backend that wraps inductor's and counts both the graphs it compiles
and the calls that run them: every decode step must have run compiled code."""

from __future__ import annotations

import pytest
import torch
from generation_cases import DECODERS, LM_DECODERS, ends_early, make_model, sources
from torch._inductor.compile_fx import compile_fx

from seqkit import compiled_decode
from seqkit.errors import ConfigError
from seqkit.generate import SearchConfig, generate

PROMPTS = [[5, 6], [], [7, 8, 9], [5], [10, 11]]


class CountingBackend:
    """A torch.compile backend: inductor (or ``inner``), counting graphs compiled and calls run."""

    def __init__(self, inner=compile_fx):
        self.inner, self.graphs, self.runs = inner, 0, 0

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        compiled = self.inner(gm, example_inputs)

        def run(*args):
            self.runs += 1
            return compiled(*args)

        return run


def _eager_backend(gm, example_inputs):
    return gm.forward


def counted(model, inner=compile_fx) -> tuple[compiled_decode.CompiledStep, CountingBackend]:
    """Make ``model``'s compiled step (what ``compile=True`` uses) with a counting backend."""
    backend = CountingBackend(inner)
    step = compiled_decode._STEPS[model] = compiled_decode.CompiledStep(model, mode="default",
                                                                         backend=backend)
    return step, backend


def mixed_workload(source, mask):
    """(what, source, mask, search, prompts): every shape compiled decoding meets."""
    unpadded = mask[:2, :3].all(1)  # rows 0 and 2 of sources() are at least 3 long
    return [
        ("greedy, padded", source, mask, SearchConfig(max_len=12), None),
        ("beam 4, nbest 2", source, mask, SearchConfig(max_len=12, beam=4, nbest=2), None),
        ("greedy, prompts (a prefill of 1 + 0 tokens)", source, mask, SearchConfig(max_len=8), PROMPTS),
        ("beam 2, prompts", source, mask, SearchConfig(max_len=8, beam=2), PROMPTS),
        ("greedy, unpadded", source[[0, 2], :3], mask[[0, 2], :3], SearchConfig(max_len=10), None),
        ("greedy, batch 1", source[:1], mask[:1], SearchConfig(max_len=10), None),
        ("beam 3, batch 1", source[:1], mask[:1], SearchConfig(max_len=10, beam=3), None),
        ("greedy, batch 1, a prompt (prefill of 3)", source[:1], mask[:1], SearchConfig(max_len=6),
         [[5, 6]]),
        ("one source position", source[3:4, :1], mask[3:4, :1], SearchConfig(max_len=6), None),
        ("longer, min_len", source, mask, SearchConfig(max_len=30, min_len=5), None),
        ("beam 3, length penalty, prompts", source, mask,
         SearchConfig(max_len=10, beam=3, length_penalty=1.0), PROMPTS),
        ("beam 3, no_repeat_ngram", source, mask, SearchConfig(max_len=10, beam=3, no_repeat_ngram=2), None),
    ], unpadded


def compiled(search: SearchConfig) -> SearchConfig:
    return SearchConfig(**{**search.__dict__, "compile": True})


def same_outputs(eager, found, what):
    assert [[h.tokens for h in row] for row in found] == [[h.tokens for h in row] for row in eager], what
    for row, eager_row in zip(found, eager, strict=True):
        for h, e in zip(row, eager_row, strict=True):
            assert abs(h.score - e.score) <= 1e-5 and abs(h.rank - e.rank) <= 1e-5, (what, h, e)


def test_compiled_decoding_holds_over_a_mixed_workload():
    """Inductor compiles three graphs at most (single steps; single steps of one row, as torch
    specialises a size of 1; a prefill of several tokens) and no more, however the workload goes
    on; every step runs compiled code, and the outputs are eager decoding's (tokens; scores to
    float rounding: inductor fuses the arithmetic differently)."""
    torch.manual_seed(0)
    model = ends_early(make_model(DECODERS["transformer-pre"]), *sources())
    source, mask = sources()
    step, backend = counted(model)
    cases, unpadded = mixed_workload(source, mask)
    assert unpadded.all()
    for what, s, m, search, prompts in cases:
        eager = generate(model, s, m, search, prompts=prompts)
        same_outputs(eager, generate(model, s, m, compiled(search), prompts=prompts), what)
    graphs = backend.graphs
    # single steps, single steps of one row (torch specialises a size of 1), a prefill of T > 1
    assert graphs <= 3, f"{graphs} graphs compiled for the decode step"
    assert step.calls > 100 and backend.runs == step.calls, \
        f"{step.calls} decode steps, {backend.runs} of them compiled: the rest ran eagerly"
    for _what, s, m, search, prompts in reversed(cases):  # again, in another order: nothing new
        generate(model, s, m, compiled(search), prompts=prompts)
    assert backend.graphs == graphs, f"{backend.graphs - graphs} recompiles on a workload seen before"
    assert backend.runs == step.calls


def test_post_norm_and_language_models_compile_and_match_eager():
    """The other arrangements the static step serves: post-norm layers, and a decoder-only
    language model (no cross-attention, no source in the cache). Graphs are counted with a
    backend that runs the traced graph as it is (no inductor): dynamo's own guards hold for every
    shape, one graph (inductor's specialisations on sizes of 1 add the other two above)."""
    source, mask = sources()
    model = ends_early(make_model(DECODERS["transformer-post"]), source, mask)
    step, backend = counted(model, _eager_backend)
    for search in (SearchConfig(max_len=10), SearchConfig(max_len=10, beam=3, nbest=2)):
        same_outputs(generate(model, source, mask, search), generate(model, source, mask, compiled(search)),
                     search)
    assert backend.graphs == 1 and backend.runs == step.calls > 0
    prompts = [[5, 6, 7], [], [8], [9, 10]]
    lm = ends_early(make_model(LM_DECODERS["transformer-lm"], "language_model"), prompts=prompts)
    step, backend = counted(lm, _eager_backend)
    for search in (SearchConfig(max_len=10), SearchConfig(max_len=10, beam=4, nbest=2)):
        same_outputs(generate(lm, None, None, search, prompts=prompts),
                     generate(lm, None, None, compiled(search), prompts=prompts), search)
        same_outputs(generate(lm, None, None, search, batch_size=2),
                     generate(lm, None, None, compiled(search), batch_size=2), search)
    assert backend.graphs == 1 and backend.runs == step.calls > 0


def test_the_recompile_limit_is_an_error_not_a_silent_eager_fallback():
    """Had the step recompiled up to torch's limit, torch would decode eagerly from there without
    a word (what the first attempt did); here it is an error naming the limit."""
    source, mask = sources()
    model = make_model(DECODERS["transformer-pre"])
    counted(model)
    with torch._dynamo.config.patch(recompile_limit=1):
        # every row ends at once: single steps of 5 rows, one graph
        generate(model, source, mask, SearchConfig(max_len=4, min_len=4, compile=True))
        with pytest.raises(RuntimeError, match="recompiled the decode step up to torch's limit"):
            # one row needs a second graph (inductor specialises a size of 1)
            generate(model, source[:1], mask[:1], SearchConfig(max_len=4, compile=True))


def test_compile_is_off_by_default_and_its_errors_name_the_option():
    assert SearchConfig().compile is False
    with pytest.raises(ConfigError, match="compile: compiled decoding steps through the cache"):
        SearchConfig(compile=True, use_cache=False)
    with pytest.raises(ConfigError, match="compile: must be true or false"):
        SearchConfig(compile=1)
    source, mask = sources()
    lstm = make_model(DECODERS["lstm-general"])
    with pytest.raises(ConfigError, match="compile: the decoder .* has no static cache") as error:
        generate(lstm, source, mask, SearchConfig(max_len=4, compile=True))
    assert error.value.key == "compile"


def test_eager_decoding_does_not_touch_the_static_path(monkeypatch):
    """Without compile=True nothing of the static cache runs (eager outputs stay to the bit: the
    golden test in test_decode_loop.py)."""
    from seqkit_transformer.decoder import TransformerDecoder

    def refuse(*args, **kwargs):
        raise AssertionError("the static path ran in eager decoding")

    monkeypatch.setattr(TransformerDecoder, "forward_static", refuse)
    monkeypatch.setattr(TransformerDecoder, "init_static_cache", refuse)
    source, mask = sources()
    model = make_model(DECODERS["transformer-pre"])
    generate(model, source, mask, SearchConfig(max_len=5, beam=2))
    generate(model, source, mask, SearchConfig(max_len=5))


def test_seqkit_generate_compile_gives_the_eager_outputs(export_run):
    """``seqkit generate --compile`` (a trained run, beam 2 and greedy) writes what eager decoding
    writes; with --precision int8 it is a one-line error naming --compile."""
    from click.testing import CliRunner

    from seqkit.cli import cli

    texts = ["nine hundred and forty", "eight hundred and sixty-six", "three"]
    for beam in ("1", "2"):
        args = ["generate", str(export_run), *texts, "--beam", beam, "--scores", "--backend", "cpu"]
        eager = CliRunner().invoke(cli, args)
        found = CliRunner().invoke(cli, [*args, "--compile"])
        assert eager.exit_code == 0 and found.exit_code == 0, (eager.output, found.output)
        lines = [line.split("\t") for line in found.output.splitlines()]
        expected = [line.split("\t") for line in eager.output.splitlines()]
        assert [text for _, text in lines] == [text for _, text in expected]
        scores = [float(score) for score, _ in expected]
        assert [float(score) for score, _ in lines] == pytest.approx(scores, abs=2e-4)
    result = CliRunner().invoke(cli, ["generate", str(export_run), "three", "--compile",
                                      "--precision", "int8"])
    assert result.exit_code == 2, result.output
    assert "--compile: a model quantized to int8 cannot be compiled" in result.output
    assert "Traceback" not in result.output


def test_model_generate_takes_compile(export_run):
    """The Python API passes ``compile`` on to the search (here to its one-line refusal of an int8
    model, which needs no compilation to say so)."""
    import seqkit

    model = seqkit.load(export_run, precision="int8")
    with pytest.raises(ConfigError, match="compile") as error:
        model.generate("three", compile=True)
    assert error.value.key == "compile"
