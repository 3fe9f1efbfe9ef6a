"""The built-in tasks (plugins/seqkit_tasks) on tiny data, built through the registry and config."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from seqkit.config import DataConfig
from seqkit.data import encode_split
from seqkit.errors import ConfigError, DataError
from seqkit.interfaces import BOS, EOS, PAD, Example

PAIRS = [("the cat sat", "le chat assis"), ("the dog ran", "le chien courut"),
         ("a cat ran", "un chat courut"), ("the cat", "le chat")]
SENTENCES = ["le chat est assis sur le tapis", "le chien a couru dans le jardin",
             "un chat noir dort sur le toit", "les enfants jouent dans la rue"]


def write(path, lines):
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def fitted(task):
    task.fit(task.examples("train"))
    return task


def reloaded(task, make_task, name, **options):
    """A fresh task restored from ``task``'s state, through JSON like a checkpoint."""
    fresh = make_task(name, **options)
    fresh.load_state_dict(json.loads(json.dumps(task.state_dict())))
    return fresh


def test_every_task_is_registered(builtin_tasks):
    assert builtin_tasks.names("task") == ["classification", "copy", "language_model", "regression",
                                     "reverse", "sort", "translation"]


# -- translation --------------------------------------------------------------------------------


@pytest.mark.parametrize("tokenizer", ["char", "bpe"])
def test_translation_tsv(tmp_path, make_task, tokenizer):
    write(tmp_path / "train.tsv", [f"{s}\t{t}" for s, t in PAIRS])
    write(tmp_path / "test.tsv", [f"{s}\t{t}" for s, t in PAIRS[:2]])
    options = {"train": "train.tsv", "test": "test.tsv", "tokenizer": tokenizer, "vocab_size": 30}
    task = fitted(make_task("translation", **options))
    assert task.splits() == ["train", "test"]
    with pytest.raises(DataError, match="^task.valid: no file configured"):
        task.examples("valid")
    shape = task.model_shape()
    assert shape.kind == "seq2seq" and shape.pad_id == PAD and shape.source_vocab <= 30
    example = next(task.examples("test"))
    encoded = task.encode(example)
    assert encoded.source.dtype == torch.long and encoded.source.dim() == 1
    assert encoded.target[0] == BOS and encoded.target[-1] == EOS
    assert task.decode(encoded.target[1:-1]) == "le chat assis"
    assert task.decode(torch.cat([encoded.target, torch.tensor([5, 6])])) == "le chat assis"  # stops at eos
    assert task.encode(Example("the cat", None)).target is None
    assert torch.equal(task.encode_source("the cat sat"), encoded.source)

    fresh = reloaded(task, make_task, "translation", **options)
    for example in task.examples("train"):
        a, b = task.encode(example), fresh.encode(example)
        assert torch.equal(a.source, b.source) and torch.equal(a.target, b.target)


def test_translation_metrics_through_sacrebleu(tmp_path, make_task):
    write(tmp_path / "train.tsv", [f"{s}\t{t}" for s, t in PAIRS])
    task = fitted(make_task("translation", train="train.tsv", tokenizer="word", lowercase=True))
    references = SENTENCES
    perfect = task.metrics(references, references)
    assert perfect == {"exact_match": 1.0, "bleu": pytest.approx(100.0), "chrf": pytest.approx(100.0)}
    normalized = task.metrics(references, ["Le  Chat est assis sur le TAPIS", *references[1:]])
    assert normalized["exact_match"] == 1.0  # references are lowercased and spaced like predictions
    worse = task.metrics([references[0], "le chien a couru", "un chat blanc dort sur le toit", "x"],
                         references)
    assert worse["exact_match"] == 0.25
    assert 0 <= worse["bleu"] < 100 and 0 < worse["chrf"] < 100
    assert task.metrics([], []) == {}


def test_translation_jsonl_and_shared_vocab(tmp_path, make_task):
    write(tmp_path / "train.jsonl", [json.dumps({"de": s, "en": t}) for s, t in PAIRS])
    options = {"train": "train.jsonl", "format": "jsonl", "source_key": "de", "target_key": "en",
               "tokenizer": "word", "shared_vocab": True}
    task = fitted(make_task("translation", **options))
    shape = task.model_shape()
    assert shape.source_vocab == shape.target_vocab
    assert set(task.state_dict()) == {"tokenizer"}
    assert task.encode(Example("le chat", None)).source.tolist() == task.encode(
        Example("the cat", "le chat")).target[1:-1].tolist()
    fresh = reloaded(task, make_task, "translation", **options)
    assert fresh.encode_source("the chat").tolist() == task.encode_source("the chat").tolist()


def test_translation_parallel_files(tmp_path, make_task):
    write(tmp_path / "train.de", [s for s, _ in PAIRS])
    write(tmp_path / "train.en", [t for _, t in PAIRS])
    task = fitted(make_task("translation", train="train", format="parallel", source_lang="de",
                            target_lang="en", tokenizer="char"))
    examples = list(task.examples("train"))
    assert examples[1].source == "the dog ran" and examples[1].target == "le chien courut"
    assert examples[1].where == f"{tmp_path / 'train.de'}:2"


def test_translation_errors(tmp_path, make_task):
    with pytest.raises(ConfigError, match="task.source_lang: format \"parallel\" needs"):
        make_task("translation", format="parallel", target_lang="en")
    with pytest.raises(ConfigError, match="task.target_lang: only used with format = \"parallel\""):
        make_task("translation", target_lang="en")
    with pytest.raises(ConfigError, match="task.vocab_size: must exceed"):
        make_task("translation", vocab_size=3)
    write(tmp_path / "train.jsonl", ['{"source": "a", "target": "b"}', '{"source": 3, "target": "b"}'])
    task = make_task("translation", train="train.jsonl", format="jsonl")
    with pytest.raises(DataError, match=f"^{tmp_path / 'train.jsonl'}:2: source must be text"):
        task.fit(task.examples("train"))


# -- language model -----------------------------------------------------------------------------


def test_language_model(tmp_path, make_task):
    write(tmp_path / "train.txt", ["the cat sat", "", "the dog ran"])
    write(tmp_path / "valid.jsonl", [json.dumps({"body": "the cat ran"})])
    task = fitted(make_task("language_model", train="train.txt", valid="valid.jsonl", tokenizer="char"))
    assert task.splits() == ["train", "valid"]
    assert task.model_shape().kind == "language_model" and task.model_shape().target_vocab > 4
    encoded = task.encode(next(task.examples("train")))
    assert encoded.source is None
    assert task.decode(encoded.target) == "the cat sat"
    assert task.metrics(["a"], ["b"]) == {}

    jsonl = make_task("language_model", train="train.txt", valid="valid.jsonl", format="jsonl",
                      text_key="body", tokenizer="char")
    jsonl.load_state_dict(json.loads(json.dumps(task.state_dict())))
    example = next(jsonl.examples("valid"))
    assert example.target == "the cat ran"
    assert torch.equal(jsonl.encode(example).target, task.encode(Example(None, "the cat ran")).target)


# -- classification -----------------------------------------------------------------------------


def test_classification(tmp_path, make_task):
    write(tmp_path / "train.tsv", ["good movie\tpos", "bad movie\tneg", "great fun\tpos", "dull\tmeh"])
    write(tmp_path / "valid.tsv", ["good fun\tpos", "bad\tugly"])
    task = fitted(make_task("classification", train="train.tsv", valid="valid.tsv"))
    assert task.labels == ["meh", "neg", "pos"]
    shape = task.model_shape()
    assert shape.kind == "classifier" and shape.num_outputs == 3
    valid = task.examples("valid")
    encoded = task.encode(next(valid))
    assert encoded.target.dim() == 0 and task.decode(encoded.target) == "pos"
    with pytest.raises(DataError, match=f"^{tmp_path / 'valid.tsv'}:2: unknown label 'ugly'"):
        task.encode(next(valid))
    assert task.encode(Example("good", None)).target is None
    assert task.metrics(["pos", "neg", "pos", "meh"], ["pos", "pos", "pos", "meh"]) == {"accuracy": 0.75}

    fresh = reloaded(task, make_task, "classification", train="train.tsv")
    assert fresh.labels == task.labels
    assert fresh.encode(Example("great movie", "neg")).target.item() == 1


def test_classification_jsonl_numeric_labels_and_too_few(tmp_path, make_task):
    write(tmp_path / "train.jsonl", ['{"t": "a b", "y": 1}', '{"t": "c", "y": 0}', '{"t": "d", "y": 10}'])
    task = fitted(make_task("classification", train="train.jsonl", format="jsonl", text_key="t",
                            label_key="y", tokenizer="char"))
    assert task.labels == ["0", "1", "10"]
    assert task.metrics(["1", "0"], [1, 0]) == {"accuracy": 1.0}
    write(tmp_path / "one.tsv", ["a\tx", "b\tx"])
    with pytest.raises(DataError, match="at least 2 labels"):
        fitted(make_task("classification", train="one.tsv"))


# -- regression ---------------------------------------------------------------------------------


def test_regression_csv(tmp_path, make_task):
    write(tmp_path / "train.csv", ["10, 1,2, 3,4", "20, 5,6", "30, 7,8, 9,10, 11,12"])
    task = fitted(make_task("regression", train="train.csv", features=2))
    assert task.model_shape() == type(task.model_shape())("regressor", source_features=2, num_outputs=1,
                                                          pad_id=PAD)
    examples = list(task.examples("train"))
    encoded = [task.encode(e) for e in examples]
    assert encoded[0].source.shape == (2, 2) and encoded[0].source.dtype == torch.float32
    targets = torch.cat([e.target for e in encoded])
    assert targets.mean().abs() < 1e-6 and (targets.std(unbiased=False) - 1).abs() < 1e-5
    assert task.decode(encoded[2].target) == pytest.approx([30.0])
    fresh = reloaded(task, make_task, "regression", train="train.csv", features=2)
    assert torch.equal(fresh.encode(examples[1]).target, encoded[1].target)

    raw = make_task("regression", train="train.csv", features=2, standardize=False)
    assert fitted(raw).encode(examples[0]).target.tolist() == [10.0]


def test_regression_npz_and_metrics(tmp_path, make_task):
    np.savez(tmp_path / "train.npz", inputs=np.random.default_rng(0).normal(size=(5, 3, 4)),
             targets=np.arange(10.0).reshape(5, 2))
    task = fitted(make_task("regression", train="train.npz", features=4, outputs=2))
    assert task.model_shape().num_outputs == 2 and task.model_shape().source_features == 4
    first = next(task.examples("train"))
    assert task.decode(task.encode(first).target) == pytest.approx([0.0, 1.0], abs=1e-5)
    with pytest.raises(DataError, match="inputs has 4 features per step, expected 3"):
        fitted(make_task("regression", train="train.npz", features=3, outputs=2))

    references = [[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]]
    assert task.metrics(references, references) == {"mse": 0.0, "mae": 0.0, "r2": 1.0}
    metrics = task.metrics([[1.0, 5.0], [2.0, 5.0], [4.0, 6.0]], references)
    assert metrics["mse"] == pytest.approx(2 / 6) and metrics["mae"] == pytest.approx(2 / 6)
    assert metrics["r2"] == pytest.approx(((1 - 1 / 2) + 0.0) / 2)  # constant reference, imperfect: 0
    with pytest.raises(ConfigError, match="task.train: expected a .npz or .csv file"):
        make_task("regression", train="train.parquet")


# -- synthetic ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, transform", [
    ("copy", lambda s: s), ("reverse", lambda s: s[::-1]), ("sort", lambda s: sorted(s, key=int)),
])
def test_synthetic_targets_are_correct(make_task, name, transform):
    task = fitted(make_task(name, symbols=12, max_len=6, train_size=50, valid_size=10, test_size=10))
    assert task.model_shape().source_vocab == task.model_shape().target_vocab == 16
    for split in ("train", "valid", "test"):
        examples = list(task.examples(split))
        assert len(examples) == {"train": 50, "valid": 10, "test": 10}[split]
        for example in examples:
            symbols = example.source.split(" ")
            assert 1 <= len(symbols) <= 6 and all(0 <= int(s) < 12 for s in symbols)
            assert example.target.split(" ") == transform(symbols)
            encoded = task.encode(example)
            assert task.decode(encoded.target[1:-1]) == example.target
            assert task.decode(encoded.source) == example.source
    assert task.metrics(["1 2", "3"], ["1 2", "4"]) == {"exact_match": 0.5}


def test_synthetic_is_deterministic_and_splits_are_disjoint(make_task):
    options = {"min_len": 4, "max_len": 8, "train_size": 300, "valid_size": 50, "test_size": 50}
    a, b = make_task("reverse", **options), make_task("reverse", **options)
    assert list(a.examples("train")) == list(b.examples("train"))
    other = make_task("reverse", seed=1, **options)
    assert list(other.examples("train")) != list(a.examples("train"))
    train, valid, test = ({e.source for e in a.examples(s)} for s in ("train", "valid", "test"))
    assert not train & valid and not train & test and not valid & test
    assert next(a.examples("valid")).where == "reverse.valid:1"


def test_synthetic_small_space_and_state(make_task):
    task = make_task("copy", symbols=2, min_len=1, max_len=2, train_size=20, valid_size=0, test_size=30)
    assert task.splits() == ["train", "test"]
    assert len(list(task.examples("train"))) == 20  # every sequence is held out: train shares them
    fresh = reloaded(fitted(task), make_task, "copy", symbols=2)
    assert fresh.encode_source("1 0 1").tolist() == [5, 4, 5]
    with pytest.raises(DataError, match="saved vocabulary has 6 tokens"):
        reloaded(task, make_task, "copy", symbols=3)
    with pytest.raises(ConfigError, match="task.max_len: must be at least min_len"):
        make_task("sort", min_len=3, max_len=2)
    with pytest.raises(DataError, match="^task.valid_size: 0, no valid split"):
        encode_split(task, "valid", DataConfig())


def test_tasks_feed_the_data_pipeline(tmp_path, make_task):
    task = fitted(make_task("sort", train_size=40, max_len=12))
    encoded = encode_split(task, "train", DataConfig(max_source_len=8, max_target_len=10))
    stats = encoded.stats
    assert stats["examples"] == 40 and stats["kept"] + stats["dropped"] == 40 and stats["dropped"] > 0
    batch = encoded.batch(range(len(encoded)))
    assert batch.source.shape[1] <= 8 and batch.target.shape[1] <= 10
