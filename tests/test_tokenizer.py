"""seqkit.tokenizer: char, word and BPE vocabularies on HF tokenizers."""

from __future__ import annotations

import pytest

from seqkit.errors import DataError
from seqkit.interfaces import BOS, EOS, PAD, SPECIAL_TOKENS, UNK
from seqkit.tokenizer import Tokenizer

TEXTS = [
    "the cat sat on the mat",
    "the dog sat on the log",
    "  a cat,  a dog\tand the mat. ",
    "the the the cat cat dog",
]


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_special_tokens_have_fixed_ids(kind):
    tokenizer = Tokenizer.train(kind, TEXTS)
    assert [tokenizer.id_to_token(i) for i in (PAD, BOS, EOS, UNK)] == list(SPECIAL_TOKENS)
    assert tokenizer.encode("") == []
    assert tokenizer.decode([]) == ""


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_char_and_bpe_round_trip_exactly(kind):
    tokenizer = Tokenizer.train(kind, TEXTS, vocab_size=40)
    for text in [*TEXTS, "  dog  cat ", "\tthe\t", "mat.the,cat"]:
        ids = tokenizer.encode(text)
        assert UNK not in ids
        assert tokenizer.decode(ids) == text


def test_bpe_merges_up_to_vocab_size():
    tokenizer = Tokenizer.train("bpe", TEXTS, vocab_size=40)
    assert tokenizer.vocab_size == 40
    assert len(tokenizer.encode("the cat sat on the mat")) < len("the cat sat on the mat")
    assert Tokenizer.train("bpe", TEXTS, vocab_size=40).to_json() == tokenizer.to_json()


def test_word_joins_with_single_spaces_and_keeps_most_frequent():
    tokenizer = Tokenizer.train("word", TEXTS)
    assert tokenizer.decode(tokenizer.encode("  the   cat\tsat ")) == "the cat sat"
    small = Tokenizer.train("word", TEXTS, vocab_size=7)  # 4 specials + the 3 most frequent words
    assert small.vocab_size == 7
    assert UNK not in small.encode("the cat")  # "the" (7) and "cat" (4) are among them
    assert small.encode("log") == [UNK]


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_unknowns_become_unk(kind):
    tokenizer = Tokenizer.train(kind, TEXTS)
    assert UNK in tokenizer.encode("zebra ü")
    assert tokenizer.decode([UNK]) == ""
    # a literal special token in the text must not become padding or bos/eos
    assert not {PAD, BOS, EOS} & set(tokenizer.encode("the <pad> <bos> <eos> cat"))


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_json_round_trip_gives_identical_ids(kind):
    tokenizer = Tokenizer.train(kind, TEXTS, vocab_size=30, lowercase=True)
    loaded = Tokenizer.from_json(tokenizer.to_json())
    assert loaded.kind == kind
    assert loaded.vocab_size == tokenizer.vocab_size
    for text in [*TEXTS, "The CAT zebra"]:
        assert loaded.encode(text) == tokenizer.encode(text)
        assert loaded.decode(loaded.encode(text)) == tokenizer.decode(tokenizer.encode(text))


def test_lowercase():
    tokenizer = Tokenizer.train("word", TEXTS, lowercase=True)
    assert tokenizer.encode("THE Cat") == tokenizer.encode("the cat")
    assert tokenizer.normalize(" The   Cat ") == "the cat"


def test_fixed_vocabulary():
    tokenizer = Tokenizer.from_tokens("word", ["0", "1", "2"])
    assert tokenizer.vocab_size == 7
    assert tokenizer.encode("2 0 1 9") == [6, 4, 5, UNK]
    assert tokenizer.decode([6, 4, 5]) == "2 0 1"
    with pytest.raises(ValueError, match="twice"):
        Tokenizer.from_tokens("char", ["a", "a"])


def test_bad_arguments_and_bad_json():
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        Tokenizer.train("sentencepiece", TEXTS)
    with pytest.raises(ValueError, match="special tokens"):
        Tokenizer.train("bpe", TEXTS, vocab_size=4)
    with pytest.raises(DataError, match="invalid tokenizer JSON"):
        Tokenizer.from_json("{not json")
