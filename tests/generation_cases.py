"""Decoding cases whose outputs are recorded in tests/golden/generation.json: greedy, beam (nbest,
length penalty, min_len, no_repeat_ngram), sampling and prompts, for every built-in decoder, on
small random models with fixed seeds and padded sources. Changes to the search loop or the cache
must keep these outputs (tokens and scores, to the bit) or explain each difference.

    python tests/generation_cases.py   # rewrites the golden file from the current code
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from seqkit.config import load_config
from seqkit.generate import SearchConfig, generate
from seqkit.interfaces import EOS, PAD
from seqkit.model import ModelShape, build_model
from seqkit.plugins import make_plugin_manager

GOLDEN = Path(__file__).parent / "golden" / "generation.json"
VOCAB = 40
DECODERS = {
    "transformer-post": {"name": "transformer", "layers": 2, "heads": 2, "norm": "post", "dropout": 0.0},
    "transformer-pre": {"name": "transformer", "layers": 2, "heads": 2, "dropout": 0.0},
    "lstm-general": {"name": "lstm", "layers": 2},
    "lstm-additive": {"name": "lstm", "attention": "additive", "bridge": "linear"},
    "gru-dot": {"name": "gru", "attention": "dot", "layers": 2},
    "rnn-none": {"name": "rnn", "attention": "none", "bridge": "copy", "layers": 2},
}
LM_DECODERS = {
    "transformer-lm": {"name": "transformer", "layers": 2, "heads": 2, "dropout": 0.0,
                       "cross_attention": False},
    "lstm-lm": {"name": "lstm", "attention": "none"},
}
SEARCHES = {
    "greedy": SearchConfig(max_len=12),
    "beam4-nbest2": SearchConfig(max_len=12, beam=4, nbest=2),
    "beam3-penalty": SearchConfig(max_len=10, beam=3, length_penalty=1.0, min_len=3),
    "beam3-norepeat": SearchConfig(max_len=10, beam=3, no_repeat_ngram=2),
    "greedy-minlen": SearchConfig(max_len=9, min_len=9),
    "sample": SearchConfig(max_len=10, sample=True, seed=7, top_k=10),
}


def make_model(decoder: dict, kind: str = "seq2seq", seed: int = 0):
    manager = make_plugin_manager()
    torch.manual_seed(seed)
    data = {"model": {"d_model": 16, "embedding_dropout": 0.0, "decoder": dict(decoder)}}
    if kind == "seq2seq":
        data["model"]["encoder"] = {"name": "lstm", "layers": 2}
    shape = ModelShape(kind, source_vocab=VOCAB if kind == "seq2seq" else None, target_vocab=VOCAB)
    model = build_model(load_config(data, manager=manager).model, shape, manager).eval()
    with torch.no_grad():  # sharper distributions than a fresh init: fewer near ties
        model.head.weight.mul_(3.0)
    return model


def ends_early(model, source=None, mask=None, prompts=None):
    """Make end-of-sequence compete with the token greedy search emits most after a few steps
    (its output row, slightly perturbed): hypotheses then end at varied lengths."""
    found = generate(model, source, mask, SearchConfig(max_len=12, min_len=12), prompts=prompts)
    tail = [t for row in found for t in row[0].tokens[2:]]
    common = max(set(tail), key=tail.count)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        noise = torch.randn(model.head.weight.size(1), generator=generator)
        model.head.weight[EOS] = model.head.weight[common] + 0.2 * noise
    return model


def sources(rows: int = 5):
    generator = torch.Generator().manual_seed(1)
    source = torch.randint(4, VOCAB, (rows, 7), generator=generator)
    lengths = torch.tensor([7, 3, 5, 1, 6][:rows])
    mask = torch.arange(7) < lengths[:, None]
    return source.masked_fill(~mask, PAD), mask


def outputs(found) -> list:
    return [[[h.tokens, float(h.score).hex(), float(h.rank).hex()] for h in row] for row in found]


def decode_all() -> dict:
    """{case name: outputs} of every decoder and search."""
    results = {}
    source, mask = sources()
    for name, decoder in DECODERS.items():
        model = ends_early(make_model(decoder), source, mask)
        for search_name, search in SEARCHES.items():
            results[f"{name}/{search_name}"] = outputs(generate(model, source, mask, search))
        prompts = [[5, 6], [], [7, 8, 9], [5], [10, 11]]
        results[f"{name}/beam2-prompts"] = outputs(
            generate(model, source, mask, SearchConfig(max_len=8, beam=2), prompts=prompts))
    for name, decoder in LM_DECODERS.items():
        prompts = [[5, 6, 7], [], [8], [9, 10]]
        model = ends_early(make_model(decoder, "language_model"), prompts=prompts)
        for search_name in ("greedy", "beam4-nbest2", "sample"):
            results[f"{name}/{search_name}"] = outputs(
                generate(model, None, None, SEARCHES[search_name], prompts=prompts))
    return results


if __name__ == "__main__":
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(decode_all(), indent=0, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
