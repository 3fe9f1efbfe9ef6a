"""seqkit import hf: a local MarianMT folder becomes a run folder that decodes as transformers does."""

from __future__ import annotations

import json
import sys
import warnings

import pytest
from click.testing import CliRunner

import seqkit  # noqa: I001  (after the skip: transformers must be there)
from seqkit.cli import cli
from seqkit.errors import CheckpointError, ConfigError
from seqkit.hf_tokenizer import marian_order
from seqkit.interfaces import Example
from tests.marian_support import hf_generate, make_marian, pairs

MAX_LEN = 20


@pytest.fixture(scope="module")
def marian(tmp_path_factory):
    return make_marian(tmp_path_factory.mktemp("marian") / "opus-mt-tiny")


@pytest.fixture(scope="module")
def imported(marian, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "imported"
    seqkit.import_hf(marian, out)
    return out


def orders(folder):
    config = json.loads((folder / "config.json").read_text())
    size = config["vocab_size"]
    order = marian_order(size, config["pad_token_id"], config["eos_token_id"], 1,
                         config["decoder_start_token_id"])
    back = {marian_id: i for i, marian_id in enumerate(order) if i != 1}
    return order, back


def sources(count=12):
    return [source for source, _ in pairs(count, offset=5000)]


def test_the_imported_tokenizer_gives_marians_ids(marian, imported):
    from transformers import MarianTokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = MarianTokenizer.from_pretrained(str(marian))
    model = seqkit.load(imported)
    _, back = orders(marian)
    # characters the source model lacks: one alone is looked up (a French "q"), runs are one <unk>
    texts = sources() + ["Hello, World!  two  spaces", "quarante-deux", "fünf ＮＦＫＣ", ""]
    for text in texts:
        theirs = reference(text).input_ids
        assert theirs[-1] == reference.eos_token_id
        assert model.task.source_tokenizer.encode(text) == [back[t] for t in theirs[:-1]], text
    # decoding: Marian's decode of its ids is seqkit's decode of the same tokens
    for text in sources(4):
        ids = reference(text).input_ids
        assert model.task.decode(__import__("torch").tensor([back[t] for t in ids])) == \
            reference.decode(ids, skip_special_tokens=True)


@pytest.mark.parametrize("beam", [1, 4])
def test_imported_model_decodes_as_transformers_to_the_token(marian, imported, beam):
    import torch
    from transformers import MarianTokenizer

    from seqkit.generate import score
    from seqkit.interfaces import BOS, EOS, PAD

    model = seqkit.load(imported)
    assert model.config.task.options.source_eos  # as Marian's tokenizer, sources end with </s>
    _, back = orders(marian)
    texts = sources()
    found = model.generate(texts, beam=beam, max_len=MAX_LEN, scores=True)
    reference = MarianTokenizer.from_pretrained(str(marian))
    same = 0
    for text, ours in zip(texts, found, strict=True):
        ids = reference(text).input_ids  # Marian's own input: its sources end with </s>
        theirs = [back[t] for t in hf_generate(marian, ids, MAX_LEN, beam=beam)]
        if beam == 1 or ours.tokens == theirs:
            assert ours.tokens == theirs, text
            same += 1
        else:  # transformers' beam search is a heuristic too: where they differ, seqkit's scores higher
            source = model.task.encode(Example(text, None)).source[None]
            rows = [[BOS, *ours.tokens, EOS], [BOS, *theirs, EOS]]  # (no length penalty: sums compare)
            width = max(map(len, rows))
            targets = torch.tensor([row + [PAD] * (width - len(row)) for row in rows])
            mine, hf = score(model.model, source.expand(2, -1), torch.ones_like(source.expand(2, -1),
                                                                                dtype=torch.bool), targets)
            assert mine >= hf, (text, ours.tokens, theirs)
    assert same >= len(texts) - 2 and found[0].tokens  # (a random model still says something)


def test_swish_models_import_as_silu(tmp_path):
    folder = make_marian(tmp_path / "swish", activation="swish", seed=3)
    seqkit.import_hf(folder, tmp_path / "run")
    model = seqkit.load(tmp_path / "run")
    assert model.config.model.encoder.options.activation == "silu"
    order, back = orders(folder)
    for text in sources(4):
        ids = model.task.encode(Example(text, None)).source.tolist()  # ending with </s>, as Marian's
        theirs = [back[t] for t in hf_generate(folder, [order[i] for i in ids], MAX_LEN)]
        assert model.generate(text, max_len=MAX_LEN, scores=True).tokens == theirs


def test_separate_embeddings_and_untied_head_import(tmp_path):
    folder = make_marian(tmp_path / "untied", seed=5, share_encoder_decoder_embeddings=False,
                         tie_word_embeddings=False)
    seqkit.import_hf(folder, tmp_path / "run")
    model = seqkit.load(tmp_path / "run")
    assert not model.config.model.share_embeddings and not model.config.model.tie_embeddings
    order, back = orders(folder)
    for text in sources(4):
        ids = model.task.encode(Example(text, None)).source.tolist()  # ending with </s>, as Marian's
        theirs = [back[t] for t in hf_generate(folder, [order[i] for i in ids], MAX_LEN)]
        assert model.generate(text, max_len=MAX_LEN, scores=True).tokens == theirs


def test_the_imported_run_evaluates_and_scores(imported, tmp_path):
    data = tmp_path / "pairs.tsv"
    data.write_text("".join(f"{s}\t{t}\n" for s, t in pairs(20, offset=7000)), encoding="utf-8")
    result = CliRunner().invoke(cli, ["eval", str(imported), "--data", str(data), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    assert metrics["examples"] == 20 and metrics["loss"] > 0
    model = seqkit.load(imported)
    assert model.score("three hundred", "trois cents") < 0
    result = CliRunner().invoke(cli, ["generate", str(imported), "three hundred"])
    assert result.exit_code == 0 and result.output.strip()


def test_cli_import(marian, tmp_path):
    result = CliRunner().invoke(cli, ["import", "hf", str(marian), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "8 sample texts tokenized and decoded as transformers does" in result.output
    assert (tmp_path / "run" / "best.safetensors").exists()
    assert (tmp_path / "run" / "config.toml").read_text().startswith("# imported from the MarianMT folder")
    again = CliRunner().invoke(cli, ["import", "hf", str(marian), "--out", str(tmp_path / "run")])
    assert again.exit_code == 2 and "holds a run already" in again.output


@pytest.mark.parametrize("key, value, message", [
    ("scale_embedding", False, "config.json: scale_embedding = false is not supported"),
    ("activation_function", "gelu_new", "config.json: activation_function 'gelu_new' is not supported"),
    ("model_type", "bart", "config.json: model_type 'bart' is not a MarianMT model"),
])
def test_what_seqkit_cannot_hold_is_one_line(marian, tmp_path, key, value, message):
    folder = tmp_path / "edited"
    folder.mkdir()
    for path in marian.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, key: value}))
    with pytest.raises(ConfigError, match=message):
        seqkit.import_hf(folder, tmp_path / "run")
    result = CliRunner().invoke(cli, ["import", "hf", str(folder), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and message in result.output
    assert not (tmp_path / "run").exists()


def test_a_pickled_model_is_refused(marian, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    for path in marian.iterdir():
        if path.name != "model.safetensors":
            (folder / path.name).write_bytes(path.read_bytes())
    (folder / "pytorch_model.bin").write_bytes(b"not unpickled")
    with pytest.raises(CheckpointError, match="pytorch_model.bin .a pickle, which seqkit never loads"):
        seqkit.import_hf(folder, tmp_path / "run")


def test_not_a_folder_is_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["import", "hf", str(tmp_path / "nowhere"), "--out",
                                      str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "nowhere: no such folder (a local MarianMT folder; nothing is downloaded)" in result.output


def test_a_missing_extra_names_the_pip_command(marian, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers now fails
    with pytest.raises(ConfigError, match=r"transformers is not installed; .*pip install 'seqkit\[hf\]'"):
        seqkit.import_hf(marian, tmp_path / "run")
    result = CliRunner().invoke(cli, ["import", "hf", str(marian), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "pip install 'seqkit[hf]'" in result.output


def finetune_config(imported, tmp_path, **model_changes) -> dict:
    """The imported run's [model] and [task] with the numbers data as its files."""
    from seqkit.config import tomllib

    stored = tomllib.loads((imported / "config.toml").read_text())
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    for split, offset, count in (("train", 0, 2000), ("valid", 12000, 40)):
        (data / f"{split}.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in pairs(count, offset)))
    model = stored["model"]
    for key, value in model_changes.items():
        part, _, name = key.partition("__")
        model[part][name] = value
    return {"seed": 2, "task": {**stored["task"], "train": str(data / "train.tsv"),
                                "valid": str(data / "valid.tsv")},
            "model": model, "data": {"max_source_len": 40, "max_target_len": 30},
            "train": {"steps": 40, "lr": 3e-3, "warmup_steps": 5, "eval_every": 40, "eval_examples": 8,
                      "log_every": 10}}


def test_fine_tuning_starts_from_the_imported_weights(imported, tmp_path):
    before = seqkit.load(imported)
    config = finetune_config(imported, tmp_path)
    before.use_data("valid", tmp_path / "data" / "valid.tsv")
    loss_before = before.evaluate("valid")[0]["loss"]
    seqkit.train(config, out=tmp_path / "tuned", init=imported, test=False)
    after = seqkit.load(tmp_path / "tuned")
    after.use_data("valid", tmp_path / "data" / "valid.tsv")
    loss_after = after.evaluate("valid")[0]["loss"]
    assert loss_after < loss_before - 1.0  # the loss falls
    # the tokenizers are the imported ones, not fitted again on the new data
    assert after.task.state_dict() == before.task.state_dict()
    texts = [s for s, _ in pairs(8, offset=12000)]
    assert after.generate(texts, max_len=20) != before.generate(texts, max_len=20)
    # the first step starts from the imported weights: one step at lr 0 changes nothing
    seqkit.train({**config, "train": {**config["train"], "steps": 1, "lr": 0.0, "eval_every": 1}},
                 out=tmp_path / "zero", init=imported, test=False)
    zero = seqkit.load(tmp_path / "zero")
    assert zero.generate(texts, max_len=20) == before.generate(texts, max_len=20)


@pytest.mark.parametrize("change, message", [
    ({"encoder__layers": 3}, "model.encoder.layers: .* has 2, this config 3"),
    ({"decoder__activation": "relu"}, "model.decoder.activation: .* has 'gelu', this config 'relu'"),
])
def test_fine_tuning_needs_the_same_architecture(imported, tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        seqkit.train(finetune_config(imported, tmp_path, **change), out=tmp_path / "tuned", init=imported)
    assert not (tmp_path / "tuned" / "best.safetensors").exists()


def test_fine_tuning_keeps_the_tokenizers_as_they_are(imported, tmp_path):
    config = finetune_config(imported, tmp_path)
    config["task"]["shared_vocab"] = True  # would save one of the two tokenizers
    with pytest.raises(ConfigError, match="task.shared_vocab: the task of this config does not keep"):
        seqkit.train(config, out=tmp_path / "tuned", init=imported)
