"""Beam search's stopping rule, against models whose next-token probabilities are a table and
against a plain reference beam search written one hypothesis at a time.

The rule (fairseq's finalization, Hugging Face's ``early_stopping=False``): an end-of-sequence
candidate finishes a hypothesis only when it is among the ``beam`` best candidates of its row;
a row keeps its ``beam`` best finished hypotheses and goes on while a live hypothesis can still
rank above them.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from test_generate import DECODERS, make_model, sources
from torch import Tensor, nn

from seqkit.errors import GenerationError, SeqkitError
from seqkit.generate import SearchConfig, _Search, generate, score
from seqkit.interfaces import BOS, EOS, PAD, reorder_cache
from seqkit.model import ModelShape

FLOOR = 1e-6  # probability of every token a table does not name


class TableDecoder(nn.Module):
    """The cache is the prefix itself, batch first: the generic reorder applies."""

    def init_cache(self, enc, batch_size: int, max_len: int):
        return {"prefix": torch.empty(batch_size, 0, dtype=torch.long)}

    def reorder_cache(self, cache, index: Tensor):
        return reorder_cache(cache, index)


class TableModel(nn.Module):
    """A language model whose next-token distribution is ``table[prefix]`` (the prefix without BOS),
    {EOS: 1} for a prefix the table does not name; every other token gets FLOOR."""

    def __init__(self, table: dict[tuple[int, ...], dict[int, float]], vocab: int):
        super().__init__()
        self.table, self.vocab = table, vocab
        self.encoder, self.decoder = None, TableDecoder()
        self.shape = ModelShape("language_model", target_vocab=vocab)
        self.kind = "language_model"
        self.anchor = nn.Parameter(torch.zeros(1))  # a device for generate() to read

    def next_logits(self, prefix: list[int]) -> Tensor:
        assert prefix[0] == BOS
        probs = torch.full((self.vocab,), FLOOR, dtype=torch.float64)
        for token, p in self.table.get(tuple(prefix[1:]), {EOS: 1.0}).items():
            probs[token] = p
        return (probs / probs.sum()).log().float()

    def decode(self, tokens: Tensor, enc, cache=None):
        before = cache["prefix"] if cache is not None else tokens[:, :0]
        full = torch.cat([before, tokens], dim=1)
        start = before.size(1)
        positions = range(start, full.size(1))
        logits = torch.stack([torch.stack([self.next_logits(row[: t + 1]) for t in positions])
                              for row in full.tolist()])  # (B, T, V)
        return logits, ({"prefix": full} if cache is not None else None)


A, B, C, D = 4, 5, 6, 3  # words (3 is UNK, a token like any other)

# Greedy takes "a" (0.5), then "c" (0.9), then EOS: "a c" at 0.45. Ending at once ("") is worth 0.3,
# "b" 0.18. Beam 2 has both of those finished after two steps, while "a c" is still live and better.
EARLY_END = {(): {EOS: 0.3, A: 0.5, B: 0.2}, (A,): {C: 0.9, EOS: 0.1}, (B,): {EOS: 0.9, D: 0.1},
             (A, C): {EOS: 1.0}, (B, D): {EOS: 1.0}}


def texts_of(found) -> list[list[int]]:
    return [h.tokens for h in found]


def brute_force(model, max_len: int, words: list[int], top: int) -> list[tuple[list[int], float]]:
    outputs = [list(seq) for n in range(max_len + 1) for seq in itertools.product(words, repeat=n)]
    targets = torch.tensor([[BOS, *o, EOS] + [PAD] * (max_len - len(o)) for o in outputs])
    scores = score(model, None, None, targets)
    best = scores.topk(top)
    return [(outputs[i], v) for i, v in zip(best.indices.tolist(), best.values.tolist(), strict=True)]


def test_beam_goes_on_while_a_live_hypothesis_scores_better():
    model = TableModel(EARLY_END, vocab=7)
    greedy = generate(model, config=SearchConfig(max_len=4), prompts=[[]])[0][0]
    assert greedy.tokens == [A, C]
    for beam in (2, 3, 4):
        found = generate(model, config=SearchConfig(max_len=4, beam=beam, nbest=2), prompts=[[]])[0]
        assert texts_of(found) == [[A, C], []]
        assert found[0].score == pytest.approx(math.log(0.45), abs=1e-4)
        assert found[0].score >= greedy.score - 1e-5


def test_narrow_beam_equals_brute_force_where_the_optimum_is_reachable():
    model = TableModel(EARLY_END, vocab=7)
    expected = brute_force(model, 4, [D, A, B, C], top=2)
    for use_cache in (True, False):
        found = generate(model, config=SearchConfig(max_len=4, beam=2, nbest=2, use_cache=use_cache),
                         prompts=[[]])[0]
        assert texts_of(found) == [tokens for tokens, _ in expected]
        torch.testing.assert_close(torch.tensor([h.score for h in found]),
                                   torch.tensor([value for _, value in expected]), atol=1e-4, rtol=1e-5)


def test_an_end_of_sequence_ranked_below_the_beam_does_not_finish():
    # the first step's EOS is the third candidate: with beam 2 it never finishes, although the
    # output "" (0.25) scores above both outputs beam 2 reaches ("a c a" 0.248, "b d b" 0.217)
    table = {(): {A: 0.4, B: 0.35, EOS: 0.25}, (A,): {A: 0.3, EOS: 0.01, C: 0.69},
             (B,): {B: 0.3, EOS: 0.01, D: 0.69}, (A, C): {EOS: 0.1, A: 0.9}, (B, D): {EOS: 0.1, B: 0.9}}
    model = TableModel(table, vocab=7)
    found = generate(model, config=SearchConfig(max_len=3, beam=2, nbest=2), prompts=[[]])[0]
    assert [] not in texts_of(found)
    assert texts_of(found) == [tokens for tokens, _ in reference_beam(model, None, SearchConfig(
        max_len=3, beam=2, nbest=2))]
    assert texts_of(generate(model, config=SearchConfig(max_len=3, beam=3), prompts=[[]])[0]) == [[]]


def reference_beam(model, enc, config: SearchConfig) -> list[tuple[list[int], float]]:
    """Beam search for one row, one hypothesis at a time, by the rule this module tests: the
    ``nbest`` best (tokens, score) by rank."""
    K = config.beam
    live: list[tuple[list[int], float]] = [([], 0.0)]
    kept: list[tuple[list[int], float, float]] = []  # (tokens, score, rank), best first
    while live:
        candidates = []
        for b, (tokens, value) in enumerate(live):
            logits, _ = model.decode(torch.tensor([[BOS, *tokens]]), enc)
            logp = logits[0, -1].float().log_softmax(-1).tolist()
            for t in range(2, len(logp)):  # PAD and BOS are never generated
                too_early = t == EOS and len(tokens) < config.min_len
                if too_early or (t != EOS and len(tokens) >= config.max_len):
                    continue
                candidates.append((value + logp[t], b, t))
        candidates.sort(key=lambda c: -c[0])
        going = []
        for i, (value, b, t) in enumerate(candidates[: 2 * K]):
            tokens = live[b][0]
            if t == EOS:
                if i < K:  # only an end of sequence among the beam best candidates finishes
                    kept.append((tokens, value, config.rank(value, len(tokens) + 1)))
            elif len(going) < K:
                going.append(([*tokens, t], value))
        kept = sorted(kept, key=lambda h: -h[2])[:K]
        live = going
        if live and len(kept) == K:
            bound = config.rank(max(value for _, value in live), config.max_len + 1)
            if bound <= kept[-1][2]:  # no live hypothesis can rank above the worst one kept
                break
    return [(tokens, value) for tokens, value, _ in kept[: config.nbest]]


def peaked_table(seed: int, depth: int, words: list[int]) -> dict[tuple[int, ...], dict[int, float]]:
    """Sharp next-token distributions with much of their mass on ending early, as a trained
    model's often are."""
    generator = torch.Generator().manual_seed(seed)
    table = {}
    for n in range(depth + 1):
        for prefix in itertools.product(words, repeat=n):
            logits = torch.randn(len(words) + 1, generator=generator, dtype=torch.float64) * 3
            logits[0] += 1.5  # the end of sequence
            probs = logits.softmax(0).tolist()
            table[prefix] = {EOS: probs[0], **dict(zip(words, probs[1:], strict=True))}
    return table


SETTINGS = [{"beam": 2, "nbest": 2}, {"beam": 3}, {"beam": 4, "nbest": 3}, {"beam": 3, "length_penalty": 1.0},
            {"beam": 2, "min_len": 2}, {"beam": 3, "nbest": 2, "length_penalty": 0.6, "min_len": 1}]


@pytest.mark.parametrize("settings", SETTINGS)
def test_beam_search_equals_the_reference_on_peaked_tables(settings):
    words = [D, A, B, C]
    for seed in range(12):
        model = TableModel(peaked_table(seed, 5, words), vocab=7)
        config = SearchConfig(max_len=5, **settings)
        found = generate(model, config=config, prompts=[[]])[0]
        expected = reference_beam(model, None, config)
        assert texts_of(found) == [tokens for tokens, _ in expected], seed
        torch.testing.assert_close(torch.tensor([h.score for h in found]),
                                   torch.tensor([value for _, value in expected]), atol=1e-4, rtol=1e-5)
        for h in found:  # what is returned ranks by the rule in force
            assert h.rank == pytest.approx(config.rank(h.score, len(h.tokens) + 1))


@pytest.mark.parametrize("decoder", DECODERS)
def test_beam_search_equals_the_reference_for_every_decoder(decoder):
    model = make_model(decoder, seed=3)
    source, mask = sources(4)
    for settings in ({"beam": 3, "nbest": 2}, {"beam": 2, "length_penalty": 1.0}):
        config = SearchConfig(max_len=6, **settings)
        found = generate(model, source, mask, config)
        for row in range(source.size(0)):
            width = int(mask[row].sum())
            with torch.no_grad():
                enc = model.encode(source[row: row + 1, :width], mask[row: row + 1, :width])
                expected = reference_beam(model, enc, config)
            assert texts_of(found[row]) == [tokens for tokens, _ in expected], (row, settings)


def test_finished_hypotheses_kept_per_row_are_at_most_the_beam():
    model = TableModel(peaked_table(5, 5, [D, A, B, C]), vocab=7)
    config = SearchConfig(max_len=5, beam=3, nbest=3)
    search = _Search(model, None, 2, [[], [A]], config)
    with torch.inference_mode():
        found = search.run_beam()
    assert all(len(hypotheses) <= 3 for hypotheses in found)
    assert all([h.rank for h in hypotheses] == sorted((h.rank for h in hypotheses), reverse=True)
               for hypotheses in found)


# -- constraints that cannot be met ---------------------------------------------------------------


@pytest.mark.parametrize("search", [{}, {"beam": 3}, {"sample": True, "seed": 1}])
def test_min_len_that_no_repeat_ngram_makes_impossible_is_an_error(search):
    # four words and no word twice: no output reaches six tokens
    model = make_model("gru")
    source, mask = sources()
    config = SearchConfig(max_len=8, min_len=6, no_repeat_ngram=1, **search)
    with pytest.raises(GenerationError, match=r"min_len 6 cannot be met: no_repeat_ngram 1 bans every "
                                              r"token after 4 new tokens") as caught:
        generate(model, source, mask, config)
    assert isinstance(caught.value, SeqkitError) and "\n" not in str(caught.value)


def test_a_hypothesis_with_no_allowed_token_drops_out_of_the_beam():
    # two words and no word twice: every output that meets min_len 2 is one of the two orders
    words = [D, A]
    model = TableModel({(): {A: 0.6, D: 0.4}, (A,): {D: 0.5, EOS: 0.5}, (D,): {A: 0.5, EOS: 0.5}}, vocab=5)
    config = SearchConfig(max_len=4, min_len=2, no_repeat_ngram=1, beam=2, nbest=2)
    found = generate(model, config=config, prompts=[[]])[0]
    assert sorted(texts_of(found)) == sorted([[A, D], [D, A]])
    assert all(len(h.tokens) == 2 for h in found) and set(words) >= {t for h in found for t in h.tokens}
    with pytest.raises(GenerationError, match="min_len 3 cannot be met"):
        generate(model, config=SearchConfig(max_len=4, min_len=3, no_repeat_ngram=1, beam=2), prompts=[[]])


@pytest.mark.parametrize("decoder", ["transformer", "lstm"])
def test_a_beam_whose_cache_cannot_fit_is_refused_before_allocating(decoder, monkeypatch):
    from seqkit import preflight
    from seqkit.errors import ConfigError

    model = make_model(decoder, seed=3)
    source, mask = sources(2)
    generate(model, source, mask, SearchConfig(max_len=6, beam=64))  # fits
    monkeypatch.setattr(preflight, "available_memory", lambda device=None: 1000)
    with pytest.raises(ConfigError, match=r"^beam: 64 beams need about .* GB of decoder cache") as caught:
        generate(model, source, mask, SearchConfig(max_len=6, beam=64))
    assert caught.value.key == "beam"
    assert generate(model, source, mask, SearchConfig(max_len=6, beam=1))  # greedy needs no copies
