"""seqkit export --to hf: a MarianMT folder transformers loads offline, verified to decode as seqkit."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import seqkit  # noqa: I001  (after the skip: transformers must be there)
from seqkit import export_hf
from seqkit.cli import cli
from seqkit.errors import ConfigError, ExportError, StorageError
from tests.export_support import config
from tests.marian_support import pairs


@pytest.fixture
def run(export_run):
    return export_run


def hf_outputs(folder: Path, texts: list[str], max_len: int, beam: int = 1) -> list[str]:
    """What a transformers user gets from the folder: tokenizer, generate, decode."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForSeq2SeqLM.from_pretrained(str(folder)).eval()
    outputs = []
    for text in texts:
        ids = tokenizer(text, return_tensors="pt").input_ids
        out = model.generate(ids, num_beams=beam, length_penalty=0.0, early_stopping=False,
                             max_length=max_len + 2)
        outputs.append(tokenizer.decode(out[0], skip_special_tokens=True))
    return outputs


def test_export_loads_in_transformers_and_decodes_as_seqkit(run, tmp_path):
    folder = tmp_path / "hf"
    result = seqkit.export(run, "hf", folder, check=16)
    assert result.checked == 16 and result.split == "test"
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
            "tokenizer_config.json"} <= {p.name for p in folder.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    model = seqkit.load(run)
    texts = [source for source, _ in pairs(12, offset=9000)]
    for beam in (1, 4):
        ours = model.generate(texts, beam=beam, max_len=30)
        assert hf_outputs(folder, texts, 30, beam=beam) == ours
    # generation_config.json alone gives seqkit's defaults: no arguments to generate()
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    hf = AutoModelForSeq2SeqLM.from_pretrained(str(folder))
    ids = tokenizer(texts[0], return_tensors="pt").input_ids
    assert tokenizer.decode(hf.generate(ids)[0], skip_special_tokens=True) == model.generate(texts[0])
    beam = hf.generate(ids, num_beams=4, length_penalty=0.0)[0]
    assert tokenizer.decode(beam, skip_special_tokens=True) == model.generate(texts[0], beam=4)


def test_cli_export(run, tmp_path):
    result = CliRunner().invoke(cli, ["export", str(run), "--to", "hf", str(tmp_path / "hf"),
                                      "--check", "4"])
    assert result.exit_code == 0, result.output
    assert "verified: 4 inputs of the test split decoded identically" in result.output
    again = CliRunner().invoke(cli, ["export", str(run), "--to", "hf", str(tmp_path / "hf")])
    assert again.exit_code == 2
    assert again.output.count("\n") == 1 and "is a folder that is not empty" in again.output


def test_check_file_gives_the_inputs(run, tmp_path):
    lines = tmp_path / "inputs.txt"
    lines.write_text("seven\nninety-nine thousand\n\n")
    result = CliRunner().invoke(cli, ["export", str(run), "--to", "hf", str(tmp_path / "hf"),
                                      "--check-file", str(lines)])
    assert result.exit_code == 0, result.output
    assert f"verified: 2 inputs from {lines}" in result.output


def test_a_failed_check_writes_nothing(run, tmp_path, monkeypatch):
    real = export_hf.hf_greedy

    def wrong(folder, texts, max_len):
        sources, outputs = real(folder, texts, max_len)
        return sources, [outputs[0] + [5], *outputs[1:]]

    monkeypatch.setattr(export_hf, "hf_greedy", wrong)
    with pytest.raises(ExportError, match=r"export check failed: input 1 \(.*\): the exported model decodes"):
        seqkit.export(run, "hf", tmp_path / "hf", check=2)
    assert list(tmp_path.iterdir()) == []  # neither the folder nor a temporary one


@pytest.mark.parametrize("changes, message", [
    ({"model__encoder__norm": "pre"}, 'model.encoder.norm: MarianMT needs "post", this run has "pre"'),
    ({"model__decoder__positions": "learned"},
     'model.decoder.positions: MarianMT needs "sinusoidal", this run has "learned"'),
    ({"task__shared_vocab": False, "model__share_embeddings": False},
     "task.shared_vocab: the run has a source and a target vocabulary"),
    ({"model__encoder": {"name": "lstm", "layers": 1}}, "model.encoder: 'lstm' from plugin seqkit_recurrent "
     "cannot be a MarianMT encoder"),
])
def test_what_marian_cannot_express_is_one_line(tmp_path, changes, message):
    out = tmp_path / "run"
    seqkit.train(config(train__steps=1, train__eval_every=1, **changes), out=out, test=False)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        seqkit.export(out, "hf", tmp_path / "hf")
    result = CliRunner().invoke(cli, ["export", str(out), "--to", "hf", str(tmp_path / "hf")])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and message in result.output
    assert not (tmp_path / "hf").exists()


def test_bad_arguments_are_one_line(run, tmp_path):
    with pytest.raises(ConfigError, match="--to: unknown format 'onnx'; formats: ctranslate2, hf"):
        seqkit.export(run, "onnx", tmp_path / "x")
    with pytest.raises(ConfigError, match="check: must be an integer >= 1, got 0"):
        seqkit.export(run, "hf", tmp_path / "x", check=0)
    (tmp_path / "file").write_text("")
    with pytest.raises(StorageError, match="is a file; choose a new folder"):
        seqkit.export(run, "hf", tmp_path / "file")
    with pytest.raises(ConfigError, match="--split: the run has no 'dev' split"):
        seqkit.export(run, "hf", tmp_path / "x", split="dev")


def test_a_missing_extra_names_the_pip_command(run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ConfigError, match=r"transformers is not installed; .*pip install 'seqkit\[hf\]'"):
        seqkit.export(run, "hf", tmp_path / "hf")
    result = CliRunner().invoke(cli, ["export", str(run), "--to", "hf", str(tmp_path / "hf")])
    assert result.exit_code == 2 and "pip install 'seqkit[hf]'" in result.output


def test_export_then_import_gives_the_same_model_back(run, tmp_path):
    """The import reads the export's tokenizer.json; ids 0..3 are already seqkit's, so nothing moves."""
    seqkit.export(run, "hf", tmp_path / "hf", check=4)
    result = seqkit.import_hf(tmp_path / "hf", tmp_path / "back")
    assert result.checked == 8
    original, back = seqkit.load(run), seqkit.load(tmp_path / "back")
    assert back.task.source_tokenizer.vocab_size == original.task.source_tokenizer.vocab_size
    texts = [source for source, _ in pairs(16, offset=11000)]
    for beam in (1, 3):
        assert back.generate(texts, beam=beam, max_len=30) == original.generate(texts, beam=beam, max_len=30)
    assert back.score(texts[0], "trois") == pytest.approx(original.score(texts[0], "trois"), abs=1e-4)


def test_a_run_whose_sources_end_with_eos_exports_a_tokenizer_that_appends_it(tmp_path):
    """task.source_eos (MarianMT's way, set by the import): the export's tokenizer appends <eos>
    too, and the export check passes on those ids and the outputs; then the import finds it again."""
    from transformers import AutoTokenizer

    seqkit.train(config(task__source_eos=True, train__steps=20, train__eval_every=20), out=tmp_path / "run",
                 test=False)
    texts = [source for source, _ in pairs(6, offset=7000)]
    assert seqkit.export(tmp_path / "run", "hf", tmp_path / "hf", texts=texts).checked == len(texts)
    exported = AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    model = seqkit.load(tmp_path / "run")
    assert exported(texts[0]).input_ids == [*model.task.source_tokenizer.encode(texts[0]), 2]
    seqkit.import_hf(tmp_path / "hf", tmp_path / "back")
    back = seqkit.load(tmp_path / "back")
    assert back.config.task.options.source_eos
    assert back.generate(texts, max_len=20) == model.generate(texts, max_len=20)
