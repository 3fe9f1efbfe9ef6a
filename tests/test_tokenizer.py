"""seqkit.tokenizer: char, word and BPE vocabularies on HF tokenizers."""

from __future__ import annotations

import json
import re

import pytest

from seqkit.errors import ConfigError, DataError
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


# -- real text: normalisation, whitespace, user tokens, byte fallback --------------------------------

MESSAGES = [
    "Hello %s, you have %1$s new messages",
    "Delete {name}? <b>This cannot be undone</b>",
    "(%s) of %s files: %s%%",
    "File %1$s not found in {name}.",
]
PLACEHOLDERS = ["%s", "%1$s", "{name}", "<b>"]


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_user_tokens_are_one_token_whatever_surrounds_them(kind):
    tokenizer = Tokenizer.train(kind, MESSAGES, vocab_size=60 if kind == "bpe" else None,
                                user_tokens=PLACEHOLDERS)
    for token in PLACEHOLDERS:
        [index] = tokenizer.encode(token)
        assert tokenizer.id_to_token(index) == token and tokenizer.decode([index]) == token
        # the same one id in every context: before the fix, BPE cut "%s" a different way in each
        for context in (f"x{token}y", f"({token})", f"{token}.", f" {token} ", f"a{token}{token}"):
            ids = tokenizer.encode(context)
            assert ids.count(index) == context.count(token)
            assert all(tokenizer.id_to_token(i) == token for i in ids if token in tokenizer.id_to_token(i))


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_user_tokens_round_trip_exactly(kind):
    tokenizer = Tokenizer.train(kind, MESSAGES, vocab_size=60 if kind == "bpe" else None,
                                user_tokens=PLACEHOLDERS)
    for text in MESSAGES:
        ids = tokenizer.encode(text)
        assert UNK not in ids
        assert tokenizer.decode(ids) == text


def test_user_tokens_count_within_vocab_size_and_are_not_special():
    tokenizer = Tokenizer.train("bpe", MESSAGES, vocab_size=60, user_tokens=PLACEHOLDERS)
    assert tokenizer.vocab_size == 60
    ids = {tokenizer.encode(token)[0] for token in PLACEHOLDERS}
    assert len(ids) == 4 and min(ids) > UNK  # decode skips special tokens; these must stay


def test_user_token_errors():
    cases = [
        ({"user_tokens": ["%s", ""]}, "user_tokens[1]", "empty"),
        ({"user_tokens": ["%s", "{name}", "%s"]}, "user_tokens[2]",
         "'%s' appears twice, first as user_tokens[0]"),
        ({"user_tokens": ["<unk>"]}, "user_tokens[0]", "'<unk>' is a special token"),
        ({"user_tokens": [" \t "], "whitespace": "collapse"}, "user_tokens[0]", "nothing is left of ' \\t '"),
        ({"user_tokens": ["{NAME}", "{name}"], "lowercase": True}, "user_tokens[1]",
         "'{name}' is the same as user_tokens[0] once normalised ('{name}')"),
        ({"user_tokens": ["<0x41>"], "byte_fallback": True}, "user_tokens[0]", "'<0x41>' is a byte token"),
    ]
    for options, key, message in cases:
        with pytest.raises(ConfigError, match=re.escape(message)) as caught:
            Tokenizer.train("bpe", MESSAGES, **options)
        assert caught.value.key == key

def test_nfkc_folds_compatibility_forms():
    texts = ["fine figures 12 and 34", "office fifty"]
    for kind in ("char", "word", "bpe"):
        tokenizer = Tokenizer.train(kind, texts, normalize="nfkc")
        assert tokenizer.encode("ﬁne １２") == tokenizer.encode("fine 12")
        assert UNK not in tokenizer.encode("ﬁne １２")
        assert tokenizer.normalize("ﬁne １２") == "fine 12"
    untouched = Tokenizer.train("char", texts, normalize="none")
    assert untouched.normalize("ﬁne １２") == "ﬁne １２"
    assert UNK in untouched.encode("ﬁ")


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_whitespace_collapse(kind):
    tokenizer = Tokenizer.train(kind, TEXTS, whitespace="collapse")
    messy = " the\u00a0cat\t\tsat\non\u2009the \r\n mat\u3000"
    assert tokenizer.normalize(messy) == "the cat sat on the mat"
    assert tokenizer.encode(messy) == tokenizer.encode("the cat sat on the mat")
    assert tokenizer.decode(tokenizer.encode(messy)) == "the cat sat on the mat"


def test_whitespace_keep_lets_the_char_tokenizer_see_it():
    tokenizer = Tokenizer.train("char", ["a\tb\nc  d"], whitespace="keep")
    assert tokenizer.decode(tokenizer.encode("a\tb\nc  d")) == "a\tb\nc  d"
    assert tokenizer.normalize(" a\tb ") == " a\tb "


ASCII = ["the quick brown fox jumps over the lazy dog", "pack my box with five dozen liquor jugs"]


def test_byte_fallback_spells_unseen_characters_in_bytes():
    tokenizer = Tokenizer.train("bpe", ASCII, vocab_size=300, byte_fallback=True)
    assert tokenizer.vocab_size <= 300
    for text in ["ü", "Grüße, the fox 😀", "naïve café — 東京"]:
        ids = tokenizer.encode(text)
        assert UNK not in ids
        assert tokenizer.decode(ids) == text
    assert [tokenizer.id_to_token(i) for i in tokenizer.encode("ü")] == ["<0xC3>", "<0xBC>"]
    assert UNK in Tokenizer.train("bpe", ASCII, vocab_size=300).encode("ü")  # without it: unknown


def test_byte_fallback_keeps_the_vocabulary_within_vocab_size():
    # an alphabet larger than what is left after the 256 bytes: the rarest characters go to bytes
    texts = ["".join(chr(0x4E00 + i) for i in range(k, k + 50)) for k in range(0, 300, 50)]
    tokenizer = Tokenizer.train("bpe", texts, vocab_size=300, byte_fallback=True, user_tokens=["%s"])
    assert tokenizer.vocab_size == 300
    for text in texts:
        assert tokenizer.decode(tokenizer.encode(text)) == text


def test_byte_fallback_errors():
    with pytest.raises(ConfigError, match="only for the bpe tokenizer, not char") as caught:
        Tokenizer.train("char", ASCII, byte_fallback=True)
    assert caught.value.key == "byte_fallback"
    with pytest.raises(ConfigError, match=re.escape(
            "must exceed the 4 special tokens + 256 byte tokens (byte_fallback) + 1 user tokens = 261, "
            "got 261")) as caught:
        Tokenizer.train("bpe", ASCII, vocab_size=261, byte_fallback=True, user_tokens=["%s"])
    assert caught.value.key == "vocab_size"
    smallest = Tokenizer.train("bpe", ASCII, vocab_size=262, byte_fallback=True, user_tokens=["%s"])
    assert smallest.vocab_size <= 262 and smallest.decode(smallest.encode("fox %s")) == "fox %s"


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_json_round_trip_keeps_every_option(kind):
    options = {"normalize": "nfkc", "whitespace": "collapse", "user_tokens": PLACEHOLDERS,
               "byte_fallback": kind == "bpe", "lowercase": True}
    tokenizer = Tokenizer.train(kind, MESSAGES, vocab_size=300 if kind == "bpe" else None, **options)
    loaded = Tokenizer.from_json(tokenizer.to_json())
    assert loaded.kind == kind and loaded.vocab_size == tokenizer.vocab_size
    for text in [*MESSAGES, " ﬁle\u00a0%s\t<b>Ünïcode</b> "]:
        assert loaded.encode(text) == tokenizer.encode(text)
        assert loaded.decode(loaded.encode(text)) == tokenizer.decode(tokenizer.encode(text))
        assert loaded.normalize(text) == tokenizer.normalize(text)


# Tokenizer JSON as the version before the real-text options wrote it (no normalizer options, no
# added tokens besides the specials): trained on ["a cat, a hat", "the cat"], char and word with all
# tokens, bpe with vocab_size 20, word lowercased.
_SPECIALS = [{"id": i, "content": token, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, token in enumerate(SPECIAL_TOKENS)]
_BPE_SPLIT = " ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"


def _old_json(normalizer, pre_tokenizer, decoder, model):
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *model.pop("tokens")])}
    return json.dumps({"version": "1.0", "truncation": None, "padding": None, "added_tokens": _SPECIALS,
                       "normalizer": normalizer, "pre_tokenizer": pre_tokenizer, "post_processor": None,
                       "decoder": decoder, "model": {**model, "vocab": vocab}})


OLD_JSON = {
    "char": _old_json(None, {"type": "Split", "pattern": {"Regex": "[\\s\\S]"}, "behavior": "Isolated",
                             "invert": False}, {"type": "Fuse"},
                      {"type": "WordLevel", "unk_token": "<unk>", "tokens": list("a tch,e")}),
    "word": _old_json({"type": "Lowercase"}, {"type": "WhitespaceSplit"}, None,
                      {"type": "WordLevel", "unk_token": "<unk>",
                       "tokens": ["a", "cat", "cat,", "hat", "the"]}),
    "bpe": _old_json(None, {"type": "Split", "pattern": {"Regex": _BPE_SPLIT}, "behavior": "Isolated",
                            "invert": False}, {"type": "Fuse"},
                     {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                      "ignore_merges": False,
                      "tokens": [" ", ",", "a", "c", "e", "h", "t", "at", " c", " cat", " a", " h", "he",
                                 "the", " hat"],
                      "merges": [["a", "t"], [" ", "c"], [" c", "at"], [" ", "a"], [" ", "h"], ["h", "e"],
                                 ["t", "he"], [" h", "at"]]}),
}
# what that version made of two probes: ids, decoded text, normalize()
OLD_BEHAVIOUR = {
    "char": ([[6, 8, 10, 5, 5, 7, 4, 6, 3, 4, 5, 8, 4, 6], [3, 5, 3, 3, 5, 7, 4, 6]],
             ["the  cata hat", "  cat"], ["the  cat\ta hat", "ﬁ １２ cat"]),
    "word": ([[8, 5, 4, 7], [3, 3, 5]], ["the cat a hat", "cat"], ["the cat a hat", "ﬁ １２ cat"]),
    "bpe": ([[17, 4, 13, 3, 6, 18], [3, 4, 3, 3, 13]], ["the  cata hat", "  cat"],
            ["the  cat\ta hat", "ﬁ １２ cat"]),
}


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_json_of_the_previous_version_loads_and_behaves_as_before(kind):
    tokenizer = Tokenizer.from_json(OLD_JSON[kind])
    assert tokenizer.kind == kind
    probes = ["the  cat\ta hat", "ﬁ １２ cat"]
    ids, decoded, normalized = OLD_BEHAVIOUR[kind]
    assert [tokenizer.encode(p) for p in probes] == ids
    assert [tokenizer.decode(i) for i in ids] == decoded
    assert [tokenizer.normalize(p) for p in probes] == normalized


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_text_holding_a_special_token_literally_trains_and_reads_it_as_unknown(kind):
    """Real text may hold "<bos>" or "<unk>" (markup): training learns from the text around it
    (the word tokenizer used to learn it as a second "<bos>" and then refuse its own vocabulary)."""
    tokenizer = Tokenizer.train(kind, ["a <bos> b", "c <unk> a", "b c"], 40)
    ids = tokenizer.encode("a <bos> b")
    assert UNK in ids and all(i >= UNK for i in ids)
    assert tokenizer.decode(tokenizer.encode("b c")) == "b c"
