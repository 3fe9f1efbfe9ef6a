"""The ``[task]`` options of the built-in tasks, one dataclass each. No torch here: seqkit imports
this module to list plugins and to read configs (``seqkit --help``, ``seqkit plugins``, ``config
check``), while each task's module is imported when the task is built."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from seqkit.errors import ConfigError
from seqkit.tokenizer_options import check_options

SPLITS = ("train", "valid", "test")


def check_at_least(config: Any, minimum: int, *names: str) -> None:
    """ConfigError naming the key when one of the integer options ``names`` is below ``minimum``."""
    for name in names:
        value = getattr(config, name)
        if value < minimum:
            raise ConfigError(f"must be at least {minimum}, got {value}", key=name)


def check_vocab_size(config: Any) -> None:
    if config.vocab_size <= 4:
        raise ConfigError(f"must exceed the 4 special tokens, got {config.vocab_size}", key="vocab_size")


def check_text_options(config: Any) -> None:
    """The tokenizer options of a text task (tokenizer kind, vocab_size, user_tokens,
    byte_fallback), checked when the config is read, before any data is."""
    check_options(config.tokenizer, config.vocab_size, config.user_tokens, config.byte_fallback)


@dataclass
class ClassificationConfig:
    """[task] name = "classification"."""

    train: Path | None = None  # training texts with labels; the label set is learned from them
    valid: Path | None = None  # labelled texts for validation loss and accuracy
    test: Path | None = None  # labelled texts for the final evaluation
    format: Literal["tsv", "jsonl"] = "tsv"  # text<TAB>label lines, or one object per line
    text_key: str = "text"  # jsonl: the key of the text
    label_key: str = "label"  # jsonl: the key of the label (a string or number)
    tokenizer: Literal["char", "word", "bpe"] = "word"
    vocab_size: int = 8000  # most tokens in the vocabulary, special tokens included (bpe: merge target)
    lowercase: bool = False  # lowercase text before tokenizing
    normalize: Literal["nfkc", "none"] = "nfkc"  # Unicode normalisation before tokenizing
    whitespace: Literal["collapse", "keep"] = "collapse"  # collapse: runs of spaces/tabs/newlines: one space
    user_tokens: list[str] = field(default_factory=list)  # never split: each one token ("%s", "{name}")
    byte_fallback: bool = False  # bpe: unseen characters as byte tokens <0xNN>, not <unk>
    escapes: bool = False  # tsv/text/parallel: \t \n \r \\ in a field are tab, newline, CR, \

    def __post_init__(self):
        check_vocab_size(self)
        check_text_options(self)


@dataclass
class LanguageModelConfig:
    """[task] name = "language_model"."""

    train: Path | None = None  # training text
    valid: Path | None = None  # text for validation loss and perplexity
    test: Path | None = None  # text for the final evaluation
    format: Literal["text", "jsonl"] = "text"  # one sequence per non-blank line, or one per object
    text_key: str = "text"  # jsonl: the key of the text
    tokenizer: Literal["char", "word", "bpe"] = "bpe"
    vocab_size: int = 8000  # most tokens in the vocabulary, special tokens included (bpe: merge target)
    lowercase: bool = False  # lowercase text before tokenizing
    normalize: Literal["nfkc", "none"] = "nfkc"  # Unicode normalisation before tokenizing
    whitespace: Literal["collapse", "keep"] = "collapse"  # collapse: runs of spaces/tabs/newlines: one space
    user_tokens: list[str] = field(default_factory=list)  # never split: each one token ("%s", "{name}")
    byte_fallback: bool = False  # bpe: unseen characters as byte tokens <0xNN>, not <unk>
    escapes: bool = False  # tsv/text/parallel: \t \n \r \\ in a field are tab, newline, CR, \

    def __post_init__(self):
        check_vocab_size(self)
        check_text_options(self)


@dataclass
class RegressionConfig:
    """[task] name = "regression". File formats: see ``seqkit.readers.read_float_sequences``."""

    train: Path | None = None  # .npz or .csv of training sequences and targets
    valid: Path | None = None  # sequences for validation loss and metrics
    test: Path | None = None  # sequences for the final evaluation
    features: int = 1  # values per sequence step (csv: how a row is cut; npz: checked)
    outputs: int = 1  # target values per example (csv: the first values of a row; npz: checked)
    standardize: bool = True  # the model learns targets scaled to zero mean, unit variance (train)

    def __post_init__(self):
        check_at_least(self, 1, "features", "outputs")
        for split in SPLITS:
            path = getattr(self, split)
            if path is not None and path.suffix not in (".npz", ".csv"):
                raise ConfigError(f"expected a .npz or .csv file, got {str(path)!r}", key=split)


@dataclass
class SyntheticConfig:
    """[task] name = "copy", "reverse" or "sort"."""

    symbols: int = 10  # distinct symbols, written 0 .. symbols-1 (the vocabulary, besides specials)
    min_len: int = 1  # shortest sequence
    max_len: int = 10  # longest sequence (lengths are uniform in [min_len, max_len])
    train_size: int = 10000  # sequences in the train split
    valid_size: int = 500  # sequences in the valid split (0: no valid split)
    test_size: int = 500  # sequences in the test split (0: no test split)
    seed: int = 0  # the data's own seed, independent of the run's

    def __post_init__(self):
        check_at_least(self, 1, "symbols", "min_len")
        check_at_least(self, 0, "train_size", "valid_size", "test_size")
        if self.max_len < self.min_len:
            raise ConfigError(f"must be at least min_len = {self.min_len}, got {self.max_len}", key="max_len")


@dataclass
class TranslationConfig:
    """[task] name = "translation"."""

    train: Path | None = None  # training pairs; with format "parallel" a prefix: {prefix}.{lang}
    valid: Path | None = None  # pairs for validation loss and metrics
    test: Path | None = None  # pairs for the final evaluation
    format: Literal["tsv", "jsonl", "parallel"] = "tsv"  # source<TAB>target lines, objects, two files
    source_key: str = "source"  # jsonl: the key of the source text
    target_key: str = "target"  # jsonl: the key of the target text
    source_lang: str | None = None  # parallel: suffix of the source files ("de" for train.de)
    target_lang: str | None = None  # parallel: suffix of the target files
    tokenizer: Literal["char", "word", "bpe"] = "bpe"
    vocab_size: int = 8000  # most tokens per vocabulary, special tokens included (bpe: merge target)
    shared_vocab: bool = False  # one tokenizer trained on both sides (needed by share_embeddings)
    lowercase: bool = False  # lowercase text before tokenizing (references too, when scoring)
    normalize: Literal["nfkc", "none"] = "nfkc"  # Unicode normalisation before tokenizing
    whitespace: Literal["collapse", "keep"] = "collapse"  # collapse: runs of spaces/tabs/newlines: one space
    user_tokens: list[str] = field(default_factory=list)  # never split: each one token ("%s", "{name}")
    byte_fallback: bool = False  # bpe: unseen characters as byte tokens <0xNN>, not <unk>
    escapes: bool = False  # tsv/text/parallel: \t \n \r \\ in a field are tab, newline, CR, \
    source_eos: bool = False  # each source ends with <eos> (as MarianMT/Opus-MT models were trained)

    def __post_init__(self):
        check_vocab_size(self)
        check_text_options(self)
        langs = {"source_lang": self.source_lang, "target_lang": self.target_lang}
        for key, value in langs.items():
            if self.format == "parallel" and not value:
                raise ConfigError('format "parallel" needs the file suffix of each side', key=key)
            if self.format != "parallel" and value is not None:
                raise ConfigError(f'only used with format = "parallel", not "{self.format}"', key=key)
