"""seqkit export --to ctranslate2: a CTranslate2 folder that decodes as seqkit, verified at export."""

from __future__ import annotations

import contextlib
import io
import re
import sys
from pathlib import Path

import ctranslate2
import pytest
from click.testing import CliRunner
from tokenizers import Tokenizer as HFTokenizer

import seqkit
from seqkit import export_ct2
from seqkit.cli import cli
from seqkit.errors import ConfigError, ExportError
from tests.export_support import config
from tests.marian_support import pairs


@pytest.fixture
def run(export_run):
    return export_run


def ct2_outputs(folder: Path, texts: list[str], max_len: int, beam: int = 1,
                tokenizer: str = "tokenizer.json", target: str | None = None) -> list[str]:
    """What a CTranslate2 user gets from the folder: tokenize, translate_batch, decode."""
    source_tokenizer = HFTokenizer.from_file(str(folder / tokenizer))
    target_tokenizer = HFTokenizer.from_file(str(folder / (target or tokenizer)))
    translator = ctranslate2.Translator(str(folder), device="cpu", intra_threads=1)
    tokens = [source_tokenizer.encode(text).tokens for text in texts]
    results = translator.translate_batch(tokens, **export_ct2.translate_options(max_len, beam))
    return [target_tokenizer.decode([target_tokenizer.token_to_id(t) for t in r.hypotheses[0]])
            for r in results]


def test_float32_export_decodes_as_seqkit_greedy_and_beam(run, tmp_path):
    folder = tmp_path / "ct2"
    result = seqkit.export(run, "ctranslate2", folder, check=16)
    assert (result.checked, result.split, result.quantization) == (16, "test", "float32")
    assert result.agreement == 1.0
    assert {"model.bin", "config.json", "shared_vocabulary.json", "tokenizer.json", "README.md"} <= \
        {p.name for p in folder.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    model = seqkit.load(run)
    texts = [source for source, _ in pairs(40, offset=9000)]
    for beam in (1, 4):
        assert ct2_outputs(folder, texts, 30, beam=beam) == model.generate(texts, beam=beam, max_len=30)
    # a short max_len: outputs cut at the same token
    assert ct2_outputs(folder, texts, 3) == model.generate(texts, max_len=3)


def test_the_folders_readme_translates_as_seqkit(run, tmp_path):
    folder = tmp_path / "ct2"
    seqkit.export(run, "ctranslate2", folder, check=4)
    code = re.search(r"```python\n(.*?)```", (folder / "README.md").read_text(), re.S).group(1)
    texts = [source for source, _ in pairs(6, offset=4000)]
    code = code.replace('folder = "."', f"folder = {str(folder)!r}")
    code = code.replace('texts = ["a sentence to translate"]', f"texts = {texts!r}")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {})
    assert printed.getvalue().strip() == repr(seqkit.load(run).generate(texts))


def test_int8_reports_agreement_and_bleu_without_touching_seqkits_model(run, tmp_path):
    """Quantization happens on copies: an earlier version quantized the loaded model's own weights
    in place, so seqkit's side of the check decoded garbage (agreement 0)."""
    result = seqkit.export(run, "ctranslate2", tmp_path / "int8", check=32, quantization="int8")
    assert result.quantization == "int8" and result.checked == 32
    assert 0.8 <= result.agreement <= 1.0
    assert set(result.bleu) == {"seqkit", "export", "difference"}
    assert result.bleu["difference"] == pytest.approx(result.bleu["export"] - result.bleu["seqkit"])
    assert abs(result.bleu["difference"]) < 5
    out = CliRunner().invoke(cli, ["export", str(run), "--to", "ctranslate2", str(tmp_path / "cli8"),
                                   "--quantization", "int8_float32", "--check", "8"])
    assert out.exit_code == 0, out.output
    assert re.search(r"int8_float32 weights: \d of 8 inputs of the test split \([\d.]+%\) decoded "
                     "identically", out.output)
    assert re.search(r"BLEU: seqkit [\d.]+, export [\d.]+ \([+-][\d.]+\)", out.output)


def test_cli_export(run, tmp_path):
    result = CliRunner().invoke(cli, ["export", str(run), "--to", "ctranslate2", str(tmp_path / "ct2"),
                                      "--check", "4"])
    assert result.exit_code == 0, result.output
    assert "verified: 4 inputs of the test split decoded identically" in result.output


def test_a_failed_check_writes_nothing(run, tmp_path, monkeypatch):
    real = export_ct2.ct2_greedy

    def wrong(*args):
        sources, outputs = real(*args)
        return sources, [outputs[0] + [5], *outputs[1:]]

    monkeypatch.setattr(export_ct2, "ct2_greedy", wrong)
    with pytest.raises(ExportError, match=r"export check failed: input 1 \(.*\): the exported model decodes"):
        seqkit.export(run, "ctranslate2", tmp_path / "ct2", check=2)
    assert list(tmp_path.iterdir()) == []


def test_pre_norm_learned_positions_separate_vocabularies_and_source_eos(tmp_path):
    """What a MarianMT folder cannot hold, CTranslate2's Transformer can: exported and verified."""
    changes = {"model__encoder__norm": "pre", "model__decoder__norm": "pre",
               "model__decoder__positions": "learned", "model__decoder__activation": "relu",
               "task__shared_vocab": False, "model__share_embeddings": False, "task__source_eos": True,
               "train__steps": 40, "train__eval_every": 40}
    seqkit.train(config(**changes), out=tmp_path / "run", test=False)
    result = seqkit.export(tmp_path / "run", "ctranslate2", tmp_path / "ct2", check=16)
    assert result.checked == 16
    assert {"source_tokenizer.json", "target_tokenizer.json", "source_vocabulary.json",
            "target_vocabulary.json"} <= set(result.files)
    model = seqkit.load(tmp_path / "run")
    texts = [source for source, _ in pairs(12, offset=5000)]
    exported = HFTokenizer.from_file(str(tmp_path / "ct2" / "source_tokenizer.json"))
    assert exported.encode(texts[0]).ids == [*model.task.source_tokenizer.encode(texts[0]), 2]
    for beam in (1, 4):
        assert ct2_outputs(tmp_path / "ct2", texts, 20, beam, "source_tokenizer.json",
                           "target_tokenizer.json") == model.generate(texts, beam=beam, max_len=20)


def test_bad_options_are_one_line(run, tmp_path):
    with pytest.raises(ConfigError, match="--quantization: unknown 'int4'; CTranslate2 on this path takes "
                                          "float32, int8, int8_float32"):
        seqkit.export(run, "ctranslate2", tmp_path / "x", quantization="int4")
    with pytest.raises(ConfigError, match="--quantization: the hf export writes float32 weights"):
        seqkit.export(run, "hf", tmp_path / "x", quantization="int8")
    for args in (["--to", "ctranslate2", "--quantization", "int4"], ["--to", "hf", "--quantization", "int8"]):
        result = CliRunner().invoke(cli, ["export", str(run), str(tmp_path / "x"), *args])
        assert result.exit_code == 2 and result.output.count("\n") == 1 and "--quantization" in result.output
    assert not (tmp_path / "x").exists()


def test_a_recurrent_encoder_is_one_line(tmp_path):
    seqkit.train(config(train__steps=1, train__eval_every=1, model__encoder={"name": "lstm", "layers": 1}),
                 out=tmp_path / "run", test=False)
    message = "model.encoder: 'lstm' from plugin seqkit_recurrent cannot be a CTranslate2 encoder"
    with pytest.raises(ConfigError, match=message):
        seqkit.export(tmp_path / "run", "ctranslate2", tmp_path / "ct2")
    result = CliRunner().invoke(cli, ["export", str(tmp_path / "run"), "--to", "ctranslate2",
                                      str(tmp_path / "ct2")])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and message in result.output
    assert not (tmp_path / "ct2").exists()


def test_a_missing_extra_names_the_pip_command(run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ctranslate2", None)
    with pytest.raises(ConfigError, match=r"ctranslate2 is not installed; .*pip install 'seqkit\[ct2\]'"):
        seqkit.export(run, "ctranslate2", tmp_path / "ct2")
    result = CliRunner().invoke(cli, ["export", str(run), "--to", "ctranslate2", str(tmp_path / "ct2")])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "pip install 'seqkit[ct2]'" in result.output
