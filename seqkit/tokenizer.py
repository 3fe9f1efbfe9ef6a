"""Text <-> token ids, built on Hugging Face ``tokenizers``: character, word and BPE vocabularies.

Every vocabulary starts with the special tokens ``<pad> <bos> <eos> <unk>`` at ids 0, 1, 2, 3
(``seqkit.interfaces.PAD``, ``BOS``, ``EOS``, ``UNK``). ``encode`` adds no bos/eos (tasks frame
targets themselves) and maps whatever is not in the vocabulary to UNK.

kinds:
  char  one token per character, spaces included; decode concatenates, so text made of training
        characters round-trips exactly
  word  one token per whitespace-separated word; decode joins words with single spaces
  bpe   byte-pair encoding over characters (HF ``BPE`` model and trainer); a word keeps the space
        before it (GPT-2 style pre-tokenization without bytes), so text round-trips exactly, and
        characters never seen in training become UNK instead of bytes

The whole tokenizer is an HF ``tokenizer.json`` string (``to_json``), saved inside checkpoints and
loadable by ``tokenizers.Tokenizer.from_str`` too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Literal

from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from seqkit.errors import DataError
from seqkit.interfaces import SPECIAL_TOKENS, UNK

TokenizerKind = Literal["char", "word", "bpe"]
KINDS: tuple[str, ...] = ("char", "word", "bpe")

_UNLIMITED = 1 << 24  # a vocabulary size no corpus reaches: "keep everything"
_ANY_CHARACTER = Regex(r"[\s\S]")  # Oniguruma: "." would not match a newline
_WORDS_WITH_SPACE = Regex(r" ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+")


class Tokenizer:
    """A trained vocabulary of one ``kind``; build it with :meth:`train`, :meth:`from_tokens` or
    :meth:`from_json`."""

    def __init__(self, backend: HFTokenizer, kind: str):
        self.backend = backend
        self.kind = kind
        vocab = backend.get_vocab(with_added_tokens=True)
        for expected, token in enumerate(SPECIAL_TOKENS):
            if vocab.get(token) != expected:
                raise DataError(f"tokenizer: special token {token} must have id {expected}, "
                                f"has {vocab.get(token)}")

    # -- building ------------------------------------------------------------------------------

    @classmethod
    def train(cls, kind: str, texts: Iterable[str], vocab_size: int | None = None,
              lowercase: bool = False) -> Tokenizer:
        """Learn a vocabulary of at most ``vocab_size`` tokens (special tokens included) from
        ``texts``: the most frequent characters or words, or BPE merges up to that size. None keeps
        every character / word (and, for BPE, allows merges up to a very large vocabulary)."""
        _check_kind(kind)
        if vocab_size is not None and vocab_size <= len(SPECIAL_TOKENS):
            raise ValueError(f"vocab_size must exceed the {len(SPECIAL_TOKENS)} special tokens, "
                             f"got {vocab_size}")
        backend = _empty_backend(kind, lowercase)
        size = vocab_size or _UNLIMITED
        if kind == "bpe":
            trainer = trainers.BpeTrainer(vocab_size=size, special_tokens=list(SPECIAL_TOKENS),
                                          min_frequency=0, show_progress=False)
        else:
            trainer = trainers.WordLevelTrainer(vocab_size=size, special_tokens=list(SPECIAL_TOKENS),
                                                min_frequency=0, show_progress=False)
        backend.train_from_iterator(texts, trainer)
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
        backend = _empty_backend(kind, lowercase, vocab)
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

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; special tokens (and UNK) are skipped."""
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=True)

    def id_to_token(self, index: int) -> str | None:
        return self.backend.id_to_token(index)

    def normalize(self, text: str) -> str:
        """``text`` as the tokenizer sees it: lowercased if it lowercases, whitespace collapsed to
        single spaces for ``word`` (what a decoded prediction can look like at best)."""
        if self.backend.normalizer is not None:
            text = self.backend.normalizer.normalize_str(text)
        return " ".join(text.split()) if self.kind == "word" else text

    def __repr__(self) -> str:
        return f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size})"


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown tokenizer kind {kind!r}; expected one of {', '.join(KINDS)}")


def _empty_backend(kind: str, lowercase: bool, vocab: dict[str, int] | None = None) -> HFTokenizer:
    if kind == "bpe":
        backend = HFTokenizer(models.BPE(unk_token=SPECIAL_TOKENS[UNK]))
        backend.pre_tokenizer = pre_tokenizers.Split(_WORDS_WITH_SPACE, behavior="isolated")
        backend.decoder = decoders.Fuse()
    else:
        backend = HFTokenizer(models.WordLevel(vocab, unk_token=SPECIAL_TOKENS[UNK]))
        if kind == "char":
            backend.pre_tokenizer = pre_tokenizers.Split(_ANY_CHARACTER, behavior="isolated")
            backend.decoder = decoders.Fuse()
        else:
            backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()  # decoded words join with " "
    if lowercase:
        backend.normalizer = normalizers.Lowercase()
    return backend
