"""The real-text options of the text tasks (normalize, whitespace, user_tokens, byte_fallback) reach
their tokenizers from the config, are saved with them, and leave the numbers example as it was."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from seqkit.config import load_config
from seqkit.errors import ConfigError
from seqkit.interfaces import UNK, Example
from seqkit.tokenizer import Tokenizer
from seqkit_tasks.common import train_tokenizer
from seqkit_tasks.config import TranslationConfig

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# software strings as translators get them: placeholders, markup, NBSP, a tab and a newline inside
PAIRS = [
    ("Delete %s files?", "%s Dateien löschen?"),
    ("Hello {name},\nwelcome back", "Hallo {name},\nwillkommen zurück"),
    ("<b>Warning</b>:\u00a0disk\tfull", "<b>Warnung</b>:\u00a0Festplatte\tvoll"),
    ("File %1$s of %2$s", "Datei %1$s von %2$s"),
    ("%s of %s done (%1$s%%)", "%s von %s erledigt (%1$s%%)"),
]
PLACEHOLDERS = ["%s", "%1$s", "%2$s", "{name}", "<b>", "</b>"]
TOKEN_OPTIONS = {"tokenizer": "bpe", "vocab_size": 400, "user_tokens": PLACEHOLDERS, "byte_fallback": True}


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def fitted(task):
    task.fit(task.examples("train"))
    return task


def translation(tmp_path, make_task, **options):
    write_jsonl(tmp_path / "train.jsonl", [{"source": s, "target": t} for s, t in PAIRS])
    return fitted(make_task("translation", train="train.jsonl", format="jsonl", **options))


def test_translation_config_options_reach_both_tokenizers(tmp_path, make_task):
    task = translation(tmp_path, make_task, **TOKEN_OPTIONS)
    for tokenizer in (task.source_tokenizer, task.target_tokenizer):
        for token in PLACEHOLDERS:
            [index] = tokenizer.encode(token)
            assert tokenizer.encode(f"x{token}, ({token}) {token}.").count(index) == 3
        assert tokenizer.vocab_size <= 400
    encoded = task.encode(Example("Delete %s files?", "Hallo {name}, grüß dich ✓"))
    assert UNK not in encoded.source.tolist() and UNK not in encoded.target.tolist()  # bytes, not <unk>
    assert task.decode(encoded.target[1:-1]) == "Hallo {name}, grüß dich ✓"
    # NFKC and collapsed whitespace by default: full-width digits, NBSP, tab and newline
    assert task.encode_source("%s\u00a0Dateien\tlöschen\n１２").tolist() == \
        task.encode_source("%s Dateien löschen 12").tolist()


def test_a_restored_translation_task_encodes_as_it_was_trained(tmp_path, make_task):
    task = translation(tmp_path, make_task, **TOKEN_OPTIONS, shared_vocab=True)
    fresh = make_task("translation", train="train.jsonl", format="jsonl")  # options do not matter now
    fresh.load_state_dict(json.loads(json.dumps(task.state_dict())))
    for text in [s for s, _ in PAIRS] + ["ﬁle %2$s\u00a0✓"]:
        assert fresh.encode_source(text).tolist() == task.encode_source(text).tolist()


def test_options_off_keep_text_as_it_is(tmp_path, make_task):
    task = translation(tmp_path, make_task, tokenizer="char", normalize="none", whitespace="keep")
    tokenizer = task.source_tokenizer
    assert tokenizer.decode(tokenizer.encode("Hello {name},\nwelcome")) == "Hello {name},\nwelcome"
    assert tokenizer.normalize("a\u00a0b\t１") == "a\u00a0b\t１"
    collapsed = translation(tmp_path, make_task, tokenizer="char").source_tokenizer
    assert collapsed.normalize(" a\u00a0b\t１\n") == "a b 1"


@pytest.mark.parametrize("name", ["language_model", "classification"])
def test_language_model_and_classification_pass_the_options(tmp_path, make_task, name):
    if name == "language_model":
        write_jsonl(tmp_path / "train.jsonl", [{"text": t} for _, t in PAIRS])
    else:
        write_jsonl(tmp_path / "train.jsonl", [{"text": t, "label": i % 2} for i, (_, t) in enumerate(PAIRS)])
    task = fitted(make_task(name, train="train.jsonl", format="jsonl", **TOKEN_OPTIONS))
    tokenizer = task.tokenizer
    assert [len(tokenizer.encode(token)) for token in PLACEHOLDERS] == [1] * len(PLACEHOLDERS)
    ids = tokenizer.encode("Ärger mit %s\u00a0und　１")
    assert UNK not in ids and tokenizer.decode(ids) == "Ärger mit %s und 1"


def test_references_are_normalised_like_predictions(tmp_path, make_task):
    task = translation(tmp_path, make_task, tokenizer="bpe", vocab_size=100)
    # a prediction is decoded normalised text; its reference, as written in the data, is not
    metrics = task.metrics(["file 12 saved", "a b"], ["ﬁle\u00a0１２ saved", " a\t\tb\n"])
    assert metrics["exact_match"] == 1.0


@pytest.mark.parametrize(("options", "key", "message"), [
    ({"user_tokens": ["%s", ""]}, "task.user_tokens[1]", "empty"),
    ({"user_tokens": ["%s", "{name}", "%s"]}, "task.user_tokens[2]",
     "appears twice, first as user_tokens[0]"),
    ({"tokenizer": "word", "byte_fallback": True}, "task.byte_fallback",
     "only for the bpe tokenizer, not word"),
    ({"vocab_size": 266, "byte_fallback": True, "user_tokens": PLACEHOLDERS}, "task.vocab_size",
     "must exceed the 4 special tokens + 256 byte tokens (byte_fallback) + 6 user tokens = 266, got 266"),
])
def test_bad_options_are_config_errors_naming_the_key(tmp_path, make_task, options, key, message):
    # wherever the check runs (reading the config, or fitting), the error names task.<key>
    with pytest.raises(ConfigError, match=re.escape(f"{key}: ") + ".*" + re.escape(message)):
        translation(tmp_path, make_task, **{"tokenizer": "bpe", **options})


def test_train_tokenizer_reads_every_option_of_the_config():
    config = TranslationConfig(tokenizer="bpe", vocab_size=300, lowercase=True, normalize="nfkc",
                               whitespace="collapse", user_tokens=["%S"], byte_fallback=True)
    tokenizer = train_tokenizer(config, ["Open %S now", "close it"])
    assert tokenizer.encode("OPEN\u00a0%s") == tokenizer.encode("open %s")
    assert tokenizer.decode(tokenizer.encode("%s ü")) == "%s ü"  # lowercased token; bytes for ü
    plain = train_tokenizer(TranslationConfig(tokenizer="bpe", normalize="none", whitespace="keep"),
                            ["Open %S now", "close it"])
    assert UNK in plain.encode("ü") and plain.normalize(" a\u00a0b") == " a\u00a0b"


def test_numbers_example_tokenizes_as_before():
    """The new defaults (nfkc, collapse) change nothing for examples/translate.toml's data: its
    tokenizers, trained as before (no normalizer) and as now, are the same and encode alike."""
    lines = (EXAMPLES / "data" / "numbers.train.tsv").read_text(encoding="utf-8").splitlines()
    sources, targets = zip(*(line.split("\t") for line in lines), strict=True)
    config = TranslationConfig(tokenizer="bpe", vocab_size=1000)  # translate.toml's, default options
    for texts in (sources, targets):
        before = Tokenizer.train("bpe", texts, 1000)
        now = train_tokenizer(config, texts)
        assert json.loads(now.to_json())["model"] == json.loads(before.to_json())["model"]
        probe = list(texts[:200]) + (EXAMPLES / "data" / "numbers.test.tsv").read_text(
            encoding="utf-8").replace("\t", "\n").splitlines()[:200]
        assert [now.encode(text) for text in probe] == [before.encode(text) for text in probe]


@pytest.mark.parametrize("task, expected", [
    ({"user_tokens": ["%s", "%s"]}, "task.user_tokens[1]: '%s' appears twice, first as user_tokens[0]"),
    ({"user_tokens": ["<unk>"]}, "task.user_tokens[0]: '<unk>' is a special token"),
    ({"tokenizer": "word", "byte_fallback": True}, "task.byte_fallback: only for the bpe tokenizer"),
    ({"byte_fallback": True, "vocab_size": 200}, "task.vocab_size: must exceed the 4 special tokens + 256"),
])
def test_tokenizer_options_are_checked_when_the_config_is_read(task, expected):
    """`seqkit config check` finds a bad tokenizer option before any data is read or fitted."""
    with pytest.raises(ConfigError) as info:
        load_config({"task": {"name": "translation", **task}})
    assert expected in str(info.value)
