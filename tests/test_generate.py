"""Search correctness on small random models, for every registered decoder: beam 1 is greedy,
a wide beam finds the brute-force optimum, cached equals recomputed, a batch equals its rows."""

from __future__ import annotations

import itertools

import pytest
import torch

from seqkit.config import load_config
from seqkit.errors import ConfigError
from seqkit.generate import SearchConfig, _draw, _Search, generate, score
from seqkit.interfaces import BOS, EOS, PAD
from seqkit.model import ModelShape, build_model
from seqkit.plugins import make_plugin_manager

MANAGER = make_plugin_manager()
DECODERS = MANAGER.names("decoder")
OPTIONS = {"transformer": {"layers": 2, "heads": 2, "dropout": 0.0}}
LM_OPTIONS = {"transformer": {"cross_attention": False}, "rnn": {"attention": "none", "bridge": "none"},
              "lstm": {"attention": "none", "bridge": "none"}, "gru": {"attention": "none", "bridge": "none"}}
VOCAB = 7  # four special tokens and three words: small enough to enumerate every output


def make_model(decoder: str, kind: str = "seq2seq", vocab: int = VOCAB, seed: int = 0, **decoder_options):
    torch.manual_seed(seed)
    lm = LM_OPTIONS.get(decoder, {}) if kind == "language_model" else {}
    options = {**OPTIONS.get(decoder, {}), **lm, **decoder_options}
    data = {"model": {"d_model": 16, "embedding_dropout": 0.0, "decoder": {"name": decoder, **options}}}
    if kind == "seq2seq":
        data["model"]["encoder"] = {"name": "lstm", "bidirectional": True}
    shape = ModelShape(kind, source_vocab=vocab if kind == "seq2seq" else None, target_vocab=vocab)
    model = build_model(load_config(data, manager=MANAGER).model, shape, MANAGER).eval()
    with torch.no_grad():  # sharper distributions than a fresh init: fewer near ties
        model.head.weight.mul_(4.0)
    return model


def sources(rows: int = 4, vocab: int = VOCAB):
    generator = torch.Generator().manual_seed(1)
    source = torch.randint(4, vocab, (rows, 6), generator=generator)
    lengths = torch.tensor([6, 3, 5, 1, 4, 6, 2, 5][:rows])
    mask = torch.arange(6) < lengths[:, None]
    return source.masked_fill(~mask, PAD), mask


def framed(tokens: list[int]) -> list[int]:
    return [BOS, *tokens, EOS]


def targets_of(hypotheses) -> torch.Tensor:
    rows = [framed(h.tokens) for h in hypotheses]
    width = max(map(len, rows))
    return torch.tensor([row + [PAD] * (width - len(row)) for row in rows])


@pytest.mark.parametrize("decoder", DECODERS)
def test_beam_one_is_greedy_and_scores_match_score(decoder):
    model = make_model(decoder)
    source, mask = sources()
    greedy = generate(model, source, mask, SearchConfig(max_len=8))
    # beam search's own loop with one beam (generate() sends beam 1 to the greedy loop)
    with torch.inference_mode():
        beam = _Search(model, model.encode(source, mask), 4, None, SearchConfig(max_len=8)).run_beam()
    assert [h[0].tokens for h in greedy] == [h[0].tokens for h in beam]
    found = [h[0] for h in greedy]
    assert all(EOS not in h.tokens and BOS not in h.tokens and PAD not in h.tokens for h in found)
    torch.testing.assert_close(torch.tensor([h.score for h in found]),
                               torch.tensor([h[0].score for h in beam]))
    expected = score(model, source, mask, targets_of(found))
    torch.testing.assert_close(torch.tensor([h.score for h in found]), expected, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("decoder", DECODERS)
def test_wide_beam_finds_the_brute_force_optimum(decoder):
    model = make_model(decoder)
    source, mask = sources(3)
    max_len = 4
    words = [t for t in range(VOCAB) if t not in (PAD, BOS, EOS)]  # UNK is a token like any other
    found = generate(model, source, mask, SearchConfig(max_len=max_len, beam=4**max_len, nbest=3))
    for row in range(3):
        outputs = [list(seq) for n in range(max_len + 1) for seq in itertools.product(words, repeat=n)]
        targets = torch.tensor([framed(o) + [PAD] * (max_len - len(o)) for o in outputs])
        scores = score(model, source[row: row + 1].expand(len(outputs), -1),
                       mask[row: row + 1].expand(len(outputs), -1), targets)
        best = scores.topk(3)
        assert [h.tokens for h in found[row]] == [outputs[i] for i in best.indices.tolist()]
        torch.testing.assert_close(torch.tensor([h.score for h in found[row]]), best.values,
                                   atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("search", [{}, {"beam": 3, "nbest": 2}, {"beam": 2, "no_repeat_ngram": 2},
                                    {"sample": True, "seed": 5, "top_k": 4}])
def test_cached_decoding_equals_recomputing_and_a_batch_equals_its_rows(decoder, search):
    model = make_model(decoder)
    source, mask = sources()
    config = SearchConfig(max_len=10, **search)
    cached = generate(model, source, mask, config)
    recomputed = generate(model, source, mask, SearchConfig(max_len=10, use_cache=False, **search))
    assert [[h.tokens for h in row] for row in cached] == [[h.tokens for h in row] for row in recomputed]
    torch.testing.assert_close(torch.tensor([[h.score for h in row] for row in cached]),
                               torch.tensor([[h.score for h in row] for row in recomputed]),
                               atol=1e-4, rtol=1e-5)
    if config.sample:
        return  # a row alone draws from a different stream of random numbers
    for row in range(source.size(0)):
        width = int(mask[row].sum())
        alone = generate(model, source[row: row + 1, :width], mask[row: row + 1, :width], config)
        assert [h.tokens for h in alone[0]] == [h.tokens for h in cached[row]]


@pytest.mark.parametrize("decoder", DECODERS)
def test_language_model_continues_prompts_of_different_lengths(decoder):
    model = make_model(decoder, "language_model")
    prompts = [[4, 5, 6], [5], [], [6, 6, 4, 5]]
    for search in ({}, {"beam": 3}):
        config = SearchConfig(max_len=6, **search)
        batch = generate(model, config=config, prompts=prompts)
        recompute = SearchConfig(max_len=6, use_cache=False, **search)
        recomputed = generate(model, config=recompute, prompts=prompts)
        assert [h[0].tokens for h in batch] == [h[0].tokens for h in recomputed]
        for prompt, found in zip(prompts, batch, strict=True):
            alone = generate(model, config=config, prompts=[prompt])[0][0]
            assert alone.tokens == found[0].tokens
            # the continuation's score is the full text's score minus the prompt's
            full = score(model, None, None, torch.tensor([framed(prompt + found[0].tokens)]))
            target = [BOS, *prompt]
            prefix = score_prefix(model, target) if prompt else 0.0
            assert abs(float(full) - prefix - found[0].score) < 1e-3


def score_prefix(model, tokens: list[int]) -> float:
    """log p(tokens[1:] | tokens[0]) without an end of sequence."""
    with torch.no_grad():
        logits, _ = model.decode(torch.tensor([tokens[:-1]]), None)
    logp = logits.float().log_softmax(-1)[0]
    return float(logp.gather(1, torch.tensor(tokens[1:])[:, None]).sum())


def test_sampling_with_top_k_one_is_greedy_and_a_seed_repeats():
    model = make_model("transformer", vocab=40)
    source, mask = sources(vocab=40)
    greedy = generate(model, source, mask, SearchConfig(max_len=12))
    top1 = generate(model, source, mask, SearchConfig(max_len=12, sample=True, top_k=1, seed=3))
    assert [h[0].tokens for h in top1] == [h[0].tokens for h in greedy]
    tiny_p = generate(model, source, mask, SearchConfig(max_len=12, sample=True, top_p=1e-6, seed=3))
    assert [h[0].tokens for h in tiny_p] == [h[0].tokens for h in greedy]
    draws = [[h[0].tokens for h in generate(model, source, mask, SearchConfig(max_len=12, sample=True,
                                                                               temperature=2.0, seed=seed))]
             for seed in (7, 7, 8)]
    assert draws[0] == draws[1] and draws[0] != draws[2]
    state = torch.random.get_rng_state()
    generate(model, source, mask, SearchConfig(max_len=12, sample=True))
    assert torch.equal(torch.random.get_rng_state(), state)  # the global generator is untouched


def test_top_k_and_top_p_only_draw_allowed_tokens():
    logits = torch.randn(5, 40)
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        drawn = _draw(logits, SearchConfig(sample=True, top_k=3), generator)
        assert all(int(t) in set(logits[i].topk(3).indices.tolist()) for i, t in enumerate(drawn))
    probs = logits.softmax(-1)
    for _ in range(50):
        drawn = _draw(logits, SearchConfig(sample=True, top_p=0.5), generator)
        for i, t in enumerate(drawn.tolist()):
            before = probs[i][probs[i] > probs[i, t]].sum()
            assert before < 0.5  # t is inside the smallest set holding half the mass


def test_length_limits_and_no_repeat_ngram():
    model = make_model("gru", vocab=12)
    source, mask = sources(vocab=12)
    for search in ({}, {"beam": 3}):
        longer = generate(model, source, mask, SearchConfig(max_len=9, min_len=5, **search))
        assert all(5 <= len(h[0].tokens) <= 9 for h in longer)
        short = generate(model, source, mask, SearchConfig(max_len=2, **search))
        assert all(len(h[0].tokens) <= 2 for h in short)
        repeat = generate(model, source, mask, SearchConfig(max_len=12, no_repeat_ngram=2, **search))
        for h in repeat:
            pairs = list(itertools.pairwise(h[0].tokens))
            assert len(pairs) == len(set(pairs))


def test_generation_stops_at_end_of_sequence():
    model = make_model("lstm")
    source, mask = sources()
    found = [h[0] for h in generate(model, source, mask, SearchConfig(max_len=30))]
    assert any(len(h.tokens) < 30 for h in found)
    for row, h in enumerate(found):
        logits, _ = model.decode(torch.tensor([[BOS, *h.tokens]]), model.encode(source[row: row + 1],
                                                                                mask[row: row + 1]))
        choices = logits[0, :, 2:].argmax(-1) + 2  # greedy choices, PAD and BOS never allowed
        assert choices[:-1].tolist() == h.tokens and EOS not in h.tokens
        assert len(h.tokens) == 30 or int(choices[-1]) == EOS  # stopped at the first EOS, or at max_len
    with torch.no_grad():
        model.head.weight[EOS] = 10 * model.head.weight[EOS].sign()  # EOS dominates every step
    assert all(h[0].tokens == [] for h in generate(model, source, mask, SearchConfig(max_len=30)))


def test_length_penalty_prefers_longer_outputs():
    model = make_model("transformer")
    source, mask = sources()
    plain = generate(model, source, mask, SearchConfig(max_len=8, beam=6))
    long = generate(model, source, mask, SearchConfig(max_len=8, beam=6, length_penalty=2.0))
    assert sum(len(h[0].tokens) for h in long) >= sum(len(h[0].tokens) for h in plain)
    for h in long:
        assert h[0].rank == pytest.approx(h[0].score / ((5 + len(h[0].tokens) + 1) / 6) ** 2.0)


@pytest.mark.parametrize(("option", "message"), [
    ({"beam": 0}, "beam: must be an integer >= 1"), ({"nbest": 3, "beam": 2}, "nbest: 3 is above"),
    ({"temperature": 0.0}, "temperature: must be > 0"), ({"top_p": 1.5}, "top_p: must be in (0, 1]"),
    ({"sample": True, "beam": 2}, "sample: sampling draws one"), ({"min_len": 5, "max_len": 2}, "min_len: 5"),
    ({"length_penalty": -1.0}, "length_penalty: must be >= 0"),
    ({"length_penalty": float("inf")}, "length_penalty: must be >= 0 and finite"),
    ({"length_penalty": float("nan")}, "length_penalty: must be >= 0 and finite"),
    ({"temperature": float("inf")}, "temperature: must be > 0 and finite"),
    ({"temperature": float("nan")}, "temperature: must be > 0 and finite"),
    ({"temperature": "hot"}, "temperature: must be > 0 and finite"),
    ({"top_p": float("nan")}, "top_p: must be in"),
    ({"seed": 2**70}, "seed: must be an integer from 0 to 2\\*\\*64 - 1"),
    ({"seed": -1}, "seed: must be an integer"),
    ({"seed": 1.5}, "seed: must be an integer"),
])
def test_bad_search_options_name_the_option(option, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("]", r"\]")):
        SearchConfig(**option)


@pytest.mark.parametrize("use_cache", [True, False])
def test_max_len_past_what_the_decoder_holds_is_a_config_error(use_cache):
    model = make_model("transformer", positions="learned", max_positions=8)
    source, mask = sources()
    assert generate(model, source, mask, SearchConfig(max_len=7, use_cache=use_cache))  # BOS + 7 fit
    with pytest.raises(ConfigError, match=r"^max_len: 8 new tokens need 9 decoder positions") as caught:
        generate(model, source, mask, SearchConfig(max_len=8, beam=2, use_cache=use_cache))
    assert caught.value.key == "max_len"
