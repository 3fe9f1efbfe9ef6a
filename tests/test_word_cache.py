"""The word cache (seqkit.word_cache) gives exactly the ids of the HF tokenizer it stands in for."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqkit import tokenizer as tokenizer_module
from seqkit import word_cache
from seqkit.tokenizer import Tokenizer
from seqkit.word_cache import WordCache

CORPUS = [
    "The cat sat on the mat.", "Don't stop: 3,141 cats at 12:30!", "naïve café, ﬁne Straße",
    "ΣΊΣΥΦΟΣ Οδυσσεύς", "%s files in {name}", "<b>bold</b> and %1$s", "x" * 40, "tab\there",
]

ODD = [
    "", " ", "   leading and trailing   ", "two  spaces", "tab\tand\nnewline\r\n", "\x1cfile\x1dsep\x1f",
    "nbsp\u00a0here", "narrow\u202fnbsp", "ideographic\u3000space", "line\u2028sep", "zero\u200bwidth",
    "fullwidth ＡＢＣ １２３", "ligature ﬁ ﬂ", "circled ① ⑵", "a¨b spacing diaeresis", "combining e\u0301",
    " \u0301 lone combining", "ΣΑΣ final sigma", "İstanbul", "emoji 🙂 and 𝔘", "<pad> <bos> <eos> <unk>",
    "a<bos>b", "％s fullwidth placeholder", "%S upper placeholder", "{name}x%sy", "unseen ж щ ю",
    "\x00nul", "del\x7f", "tabs\t\tonly\t", "\n", "ends with space ", "Mixed CASE words", "a" * 300,
]

OPTIONS = [dict(kind=kind, normalize=normalize, lowercase=lowercase, user_tokens=user, byte_fallback=fallback)
           for kind, normalize, lowercase, user, fallback in itertools.product(
               ("bpe", "word"), ("nfkc", "none"), (False, True), ([], ["%s", "{name}", "<b>"]), (False, True))
           if not (fallback and kind == "word")]


def _tokenizer(kind: str, texts: list[str] = CORPUS, merges: int = 30, **options) -> Tokenizer:
    vocab = {"bpe": 90 + merges + 256 * options.get("byte_fallback", False), "word": 30}[kind]
    return Tokenizer.train(kind, texts, vocab, whitespace="collapse", **options)


def _reference(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    return [tokenizer.encode(text) for text in texts]


def _batch(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    return [row.tolist() for row in tokenizer.encode_batch(texts).rows()]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(str(v) for v in o.values()))
def test_the_word_cache_gives_the_hf_tokenizers_ids_on_odd_text(options):
    tokenizer = _tokenizer(**options)
    texts = [*CORPUS, *ODD, *(a + " " + b for a, b in zip(ODD, reversed(ODD), strict=True))]
    assert _batch(tokenizer, texts) == _reference(tokenizer, texts)
    assert isinstance(tokenizer._words, WordCache)  # the cache, not the fallback, was tested
    assert _batch(tokenizer, texts[::-1]) == _reference(tokenizer, texts[::-1])  # and again, warm


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.sampled_from(
    list("aAbB zZ.,'-%s{}<>\t\n1") + ["\u00a0", "ﬁ", "Σ", "é", "e\u0301", "ж", "\u3000", "<bos>", "%s", "¨"]),
    max_size=12).map("".join), max_size=6))
def test_the_word_cache_gives_the_hf_tokenizers_ids_on_random_text(texts):
    tokenizer = _RANDOM
    assert _batch(tokenizer, texts) == _reference(tokenizer, texts)


_RANDOM = _tokenizer("bpe", normalize="nfkc", lowercase=True, user_tokens=["%s", "{name}"],
                     byte_fallback=True)


def test_the_cache_starts_again_when_full_and_stays_right(monkeypatch):
    monkeypatch.setattr(word_cache, "MAX_WORDS", 5)
    tokenizer = _tokenizer("bpe", normalize="nfkc")
    texts = [f"{word} number {i}" for i, word in enumerate(CORPUS * 3)]
    for start in range(0, len(texts), 4):
        chunk = texts[start:start + 4]
        assert _batch(tokenizer, chunk) == _reference(tokenizer, chunk)
    assert len(tokenizer._words.index) <= 5 + 12  # cleared on the way: one chunk's words past the limit


@pytest.mark.parametrize("kind, whitespace", [("char", "collapse"), ("bpe", "keep"), ("word", "keep")])
def test_tokenizers_that_do_not_split_at_spaces_encode_through_hf(kind, whitespace):
    tokenizer = Tokenizer.train(kind, CORPUS, None, whitespace=whitespace)
    texts = [*CORPUS, *ODD]
    assert _batch(tokenizer, texts) == _reference(tokenizer, texts)
    assert tokenizer._words is None


def test_bpe_dropout_is_not_cached():
    tokenizer = _tokenizer("bpe", normalize="nfkc")
    tokenizer.backend.model.dropout = 0.5
    loaded = Tokenizer.from_json(tokenizer.to_json())
    assert loaded.backend.model.dropout == 0.5
    assert len(loaded.encode_batch(["a b"])) == 1
    assert loaded._words is None


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(str(v) for v in o.values()))
def test_training_from_word_counts_learns_the_tokenizer_training_on_the_texts_learns(options, monkeypatch):
    texts = [*CORPUS * 3, *ODD, "a %s b <bos> {name}", "ＡＢＣ %S",
             *(f"{a} {b}" for a in CORPUS for b in ODD[:9])]
    counted = _tokenizer(**options, texts=texts, merges=120)  # merges enough for counts to matter
    monkeypatch.setattr(tokenizer_module, "_word_cache", lambda backend, added=None: None)
    assert counted.to_json() == _tokenizer(**options, texts=texts, merges=120).to_json()


def test_many_distinct_words_arriving_a_few_at_a_time_stay_right():
    tokenizer = _tokenizer("bpe", normalize="nfkc")
    rng = random.Random(3)
    words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyzé", k=rng.randint(1, 12))) for _ in range(3000)]
    texts = [" ".join(rng.choices(words, k=rng.randint(0, 9))) for _ in range(1500)]
    for start in range(0, len(texts), 100):  # new words keep coming: the rows' storage grows
        chunk = texts[start:start + 100]
        assert _batch(tokenizer, chunk) == _reference(tokenizer, chunk)
    assert len(tokenizer._words.ids) > 1024
