"""Text <-> token ids, built on Hugging Face ``tokenizers``: character, word and BPE vocabularies.

Every vocabulary starts with the special tokens ``<pad> <bos> <eos> <unk>`` at ids 0, 1, 2, 3
(``seqkit.interfaces.PAD``, ``BOS``, ``EOS``, ``UNK``). ``encode`` adds no bos/eos (tasks frame
targets themselves) and maps whatever is not in the vocabulary to UNK (to byte tokens for a bpe
tokenizer with ``byte_fallback``).

kinds:
  char  one token per character, spaces included; decode concatenates, so text made of training
        characters round-trips exactly
  word  one token per whitespace-separated word; decode joins words with single spaces
  bpe   byte-pair encoding over characters (HF ``BPE`` model and trainer); a word keeps the space
        before it (GPT-2 style pre-tokenization without bytes), so text round-trips exactly, and
        characters never seen in training become UNK, or with ``byte_fallback`` the byte tokens
        ``<0x00>`` .. ``<0xFF>`` of their UTF-8 form (as SentencePiece and Llama do), which decode
        back to the character

Options for real text, all applied by the HF tokenizer itself (normalizers, added tokens), so the
saved tokenizer encodes as it was trained:
  normalize     "nfkc": Unicode compatibility forms folded ("ﬁ" -> "fi", "１２" -> "12", NBSP -> space)
  whitespace    "collapse": every run of Unicode whitespace becomes one space, the ends stripped
  lowercase     after the two above
  user_tokens   strings always encoded as one token each, never split, and decoded as they are
                (placeholders such as ``%s``, ``{name}``, markup ``<b>``); they match the normalised
                text, are left out of training, and count within ``vocab_size``

The whole tokenizer is an HF ``tokenizer.json`` string (``to_json``), saved inside checkpoints and
loadable by ``tokenizers.Tokenizer.from_str`` too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Literal

from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from seqkit.errors import ConfigError, DataError
from seqkit.interfaces import SPECIAL_TOKENS, UNK
from seqkit.ragged import TokenArrays
from seqkit.tokenizer_options import BYTE_TOKENS, KINDS, check_options
from seqkit.word_cache import WordCache

TokenizerKind = Literal["char", "word", "bpe"]
NORMALIZE: tuple[str, ...] = ("nfkc", "none")
WHITESPACE: tuple[str, ...] = ("collapse", "keep")

_UNLIMITED = 1 << 24  # a vocabulary size no corpus reaches: "keep everything"
_ANY_CHARACTER = Regex(r"[\s\S]")  # Oniguruma: "." would not match a newline
_WORDS_WITH_SPACE = Regex(r" ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+")


class Tokenizer:
    """A trained vocabulary of one ``kind``; build it with :meth:`train`, :meth:`from_tokens` or
    :meth:`from_json`."""

    def __init__(self, backend: HFTokenizer, kind: str):
        self.backend = backend
        self.kind = kind
        self._words: WordCache | None | bool = False  # made at the first encode_batch (or None)
        vocab = backend.get_vocab(with_added_tokens=True)
        for expected, token in enumerate(SPECIAL_TOKENS):
            if vocab.get(token) != expected:
                raise DataError(f"tokenizer: special token {token} must have id {expected}, "
                                f"has {vocab.get(token)}")

    # -- building ------------------------------------------------------------------------------

    @classmethod
    def train(cls, kind: str, texts: Iterable[str], vocab_size: int | None = None,
              lowercase: bool = False, normalize: str = "none", whitespace: str = "keep",
              user_tokens: Sequence[str] = (), byte_fallback: bool = False) -> Tokenizer:
        """Learn a vocabulary of at most ``vocab_size`` tokens (special, user and byte tokens
        included) from ``texts``: the most frequent characters or words, or BPE merges up to that
        size. None keeps every character / word (and, for BPE, allows merges up to a very large
        vocabulary). The options are described in the module docstring; their defaults change
        nothing. A bad option is a ConfigError whose ``key`` names it (``user_tokens[2]``)."""
        check_options(kind, vocab_size, list(user_tokens), byte_fallback)
        _check_choice("normalize", normalize, NORMALIZE)
        _check_choice("whitespace", whitespace, WHITESPACE)
        backend = _empty_backend(kind, _normalizer(normalize, whitespace, lowercase), byte_fallback)
        tokens = _user_tokens(user_tokens, backend.normalizer, byte_fallback)
        reserved = len(BYTE_TOKENS) * byte_fallback + len(tokens)
        size = (vocab_size or _UNLIMITED) - reserved
        if kind == "bpe":
            # with byte fallback the alphabet is cut to fit too: rarer characters are spelled in bytes
            limit = {"limit_alphabet": size - len(SPECIAL_TOKENS)} if byte_fallback else {}
            trainer = trainers.BpeTrainer(vocab_size=size, special_tokens=list(SPECIAL_TOKENS),
                                          min_frequency=0, show_progress=False, **limit)
        else:
            trainer = trainers.WordLevelTrainer(vocab_size=size, special_tokens=list(SPECIAL_TOKENS),
                                                min_frequency=0, show_progress=False)
        # the trainer does not split special and user tokens off as encoding does (a literal
        # "<bos>" in the text would become a second "<bos>" word): it learns from the normalised
        # text between them (the normalizer is put back after training)
        split_off = [*tokens, *SPECIAL_TOKENS]
        words = _word_cache(backend, split_off)
        normalizer, backend.normalizer = backend.normalizer, None
        normalize = _normalize_function(normalizer)
        if words is None:
            backend.train_from_iterator(_between(texts, split_off, normalize), trainer)
        else:  # the same counts, a word at a time (seqkit.word_cache), given as lines of tokens
            counts = words.counts(texts, lambda text: _between([text], split_off, normalize))
            words_split = backend.pre_tokenizer
            backend.pre_tokenizer = pre_tokenizers.CharDelimiterSplit("\n")
            backend.train_from_iterator(_repeated(counts), trainer)
            backend.pre_tokenizer = words_split
        backend.normalizer = normalizer
        if byte_fallback:
            backend = _with_byte_tokens(backend)
        backend.add_tokens([AddedToken(token, normalized=True) for token in tokens])
        return cls(backend, kind)

    @classmethod
    def from_tokens(cls, kind: str, tokens: Sequence[str], lowercase: bool = False) -> Tokenizer:
        """A fixed ``char`` or ``word`` vocabulary: the special tokens, then ``tokens`` in order
        (ids 4, 5, ...); no training data needed."""
        if kind not in ("char", "word"):
            raise ValueError(f"a fixed vocabulary needs kind 'char' or 'word', got {kind!r}")
        vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
        for token in tokens:
            if token in vocab:
                raise ValueError(f"token {token!r} appears twice (or is a special token)")
            vocab[token] = len(vocab)
        backend = _empty_backend(kind, _normalizer("none", "keep", lowercase), vocab=vocab)
        backend.add_special_tokens(list(SPECIAL_TOKENS))
        return cls(backend, kind)

    @classmethod
    def from_json(cls, text: str) -> Tokenizer:
        """The tokenizer saved by :meth:`to_json`."""
        try:
            backend = HFTokenizer.from_str(text)
            model = json.loads(text)
        except Exception as exc:  # tokenizers raises a bare Exception
            raise DataError(f"tokenizer: invalid tokenizer JSON: {str(exc).splitlines()[0]}") from None
        if model["model"]["type"] == "BPE":
            kind = "bpe"
        else:
            kind = "char" if (model.get("decoder") or {}).get("type") == "Fuse" else "word"
        return cls(backend, kind)

    def to_json(self) -> str:
        """The tokenizer as an HF ``tokenizer.json`` string."""
        return self.backend.to_str()

    # -- using ---------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without bos/eos; unknown characters or words become UNK."""
        ids = self.backend.encode(text, add_special_tokens=False).ids
        # A literal "<pad>", "<bos>" or "<eos>" in the text matches the special token; the model
        # must never see those ids inside a sequence, so they count as unknown.
        return [UNK if i < UNK else i for i in ids]

    def encode_batch(self, texts: list[str]) -> TokenArrays:
        """``encode`` of each text, computed together by the tokenizers library (in Rust, on every
        core), or a word at a time from a cache of words where that gives the same ids
        (:mod:`seqkit.word_cache`), as flat arrays."""
        if self._words is False:
            self._words = _word_cache(self.backend)
        if self._words is not None:
            arrays = self._words.encode(texts)
        else:
            encodings = self.backend.encode_batch(texts, add_special_tokens=False)
            arrays = TokenArrays.from_lists([encoding.ids for encoding in encodings])
        arrays.ids[arrays.ids < UNK] = UNK  # as encode: a literal <pad>/<bos>/<eos> is unknown
        return arrays

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; special tokens (and UNK) are skipped."""
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=True)

    def id_to_token(self, index: int) -> str | None:
        return self.backend.id_to_token(index)

    def normalize(self, text: str) -> str:
        """``text`` as the tokenizer sees it: through its normalizer (NFKC, whitespace, lowercase,
        as trained), whitespace collapsed to single spaces for ``word`` (what a decoded prediction
        can look like at best)."""
        text = _normalize_function(self.backend.normalizer)(text)
        return " ".join(text.split()) if self.kind == "word" else text

    def __repr__(self) -> str:
        return f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size})"


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ConfigError(f"unknown tokenizer kind {kind!r}; expected one of {', '.join(KINDS)}",
                          key="tokenizer")


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"expected one of {', '.join(choices)}, got {value!r}", key=key)


def _user_tokens(tokens: Sequence[str], normalizer: normalizers.Normalizer | None,
                 byte_fallback: bool) -> list[str]:
    """``tokens`` as the normalised text holds them; a ConfigError naming ``user_tokens[i]`` for one
    that is empty, reserved, or the same as an earlier one."""
    reserved = {*SPECIAL_TOKENS, *(BYTE_TOKENS if byte_fallback else ())}
    normalize = _normalize_function(normalizer)
    normalized: dict[str, int] = {}  # normalised token -> index of its first appearance
    for i, token in enumerate(tokens):  # check_options has checked each as written
        key = f"user_tokens[{i}]"
        form = normalize(token)
        if not form:
            raise ConfigError(f"nothing is left of {token!r} once normalised (whitespace, normalize)",
                              key=key)
        if form in reserved:
            kind = "special" if form in SPECIAL_TOKENS else "byte"
            raise ConfigError(f"{token!r} is a {kind} token once normalised", key=key)
        if form in normalized:
            raise ConfigError(f"{token!r} is the same as user_tokens[{normalized[form]}] once normalised "
                              f"({form!r})", key=key)
        normalized[form] = i
    return list(normalized)


def _between(texts: Iterable[str], tokens: list[str], normalize: Callable[[str], str]) -> Iterator[str]:
    """The normalised pieces of ``texts`` between special and user tokens, longest token first
    where they overlap, as the HF tokenizer splits them off (leftmost-longest)."""
    pattern = re.compile("|".join(re.escape(token) for token in sorted(tokens, key=len, reverse=True)))
    for text in texts:
        yield from (piece for piece in pattern.split(normalize(text)) if piece)


def _repeated(counts: dict[str, int], most: int = 4096) -> Iterator[str]:
    """Each token as many times as it counts, as lines of at most ``most`` of it (what the HF
    trainer reads as a text, so longer lines would cost memory)."""
    for token, times in counts.items():
        for start in range(0, times, most):
            yield "\n".join([token] * min(most, times - start))


def _normalize_function(normalizer: normalizers.Normalizer | None) -> Callable[[str], str]:
    return (lambda text: text) if normalizer is None else normalizer.normalize_str


def _normalizer(normalize: str, whitespace: str, lowercase: bool) -> normalizers.Normalizer | None:
    """NFKC first (it turns NBSP and other spaces into " "), then whitespace, then lowercase; None
    or the lone Lowercase when nothing else is asked for, as tokenizers saved before these options."""
    steps = []
    if normalize == "nfkc":
        steps.append(normalizers.NFKC())
    if whitespace == "collapse":
        steps += [normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()]
    if lowercase:
        steps.append(normalizers.Lowercase())
    if len(steps) <= 1:
        return steps[0] if steps else None
    return normalizers.Sequence(steps)


def _empty_backend(kind: str, normalizer: normalizers.Normalizer | None, byte_fallback: bool = False,
                   vocab: dict[str, int] | None = None) -> HFTokenizer:
    if kind == "bpe":
        backend = HFTokenizer(models.BPE(unk_token=SPECIAL_TOKENS[UNK], byte_fallback=byte_fallback))
        backend.pre_tokenizer = pre_tokenizers.Split(_WORDS_WITH_SPACE, behavior="isolated")
        backend.decoder = decoders.Fuse()
    else:
        backend = HFTokenizer(models.WordLevel(vocab, unk_token=SPECIAL_TOKENS[UNK]))
        if kind == "char":
            backend.pre_tokenizer = pre_tokenizers.Split(_ANY_CHARACTER, behavior="isolated")
            backend.decoder = decoders.Fuse()
        else:
            backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()  # decoded words join with " "
    if normalizer is not None:
        backend.normalizer = normalizer
    return backend


def _word_cache(backend: HFTokenizer, added: list[str] | None = None) -> WordCache | None:
    """A WordCache over ``backend`` when it encodes word by word: a ``bpe`` or ``word`` tokenizer
    as :meth:`Tokenizer.train` builds them, with whitespace "collapse" (deterministic: no BPE
    dropout); None for any other (a char tokenizer, whitespace kept, a foreign tokenizer.json).
    ``added``: the added tokens, if not yet added to ``backend`` (when training)."""
    model = backend.model
    if isinstance(model, models.BPE):
        if model.dropout is not None:
            return None
        kind = "bpe"
    elif isinstance(model, models.WordLevel):
        kind = "word"
    else:
        return None
    words_split = _empty_backend(kind, None, vocab={}).pre_tokenizer
    if backend.pre_tokenizer is None or backend.normalizer is None or \
            backend.pre_tokenizer.__getstate__() != words_split.__getstate__():
        return None
    normalizer = backend.normalizer.__getstate__()
    for normalize in NORMALIZE:
        for lowercase in (False, True):
            if normalizer == _normalizer(normalize, "collapse", lowercase).__getstate__():
                if added is None:
                    added = [token.content for token in backend.get_added_tokens_decoder().values()]
                return WordCache(backend, added, lowercase)
    return None


def _with_byte_tokens(backend: HFTokenizer) -> HFTokenizer:
    """The trained BPE ``backend`` with the 256 byte tokens after its vocabulary, and a decoder that
    turns runs of them back into characters. The trainer cannot add them itself: as its special
    tokens they would be skipped when decoding. No learned token can look like one: the
    pre-tokenizer cuts "<", "0", "x41" and ">" apart."""
    data = json.loads(backend.to_str())
    vocab = data["model"]["vocab"]
    for token in BYTE_TOKENS:
        vocab[token] = len(vocab)
    backend = HFTokenizer.from_str(json.dumps(data))
    backend.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    return backend
