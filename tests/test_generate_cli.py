"""`seqkit generate` / `seqkit score` and the Python API's generate, score and attention, on tiny
trained translation and language models."""

from __future__ import annotations

import json
import random

import pytest
import torch
from click.testing import CliRunner

import seqkit
from seqkit.cli import cli

WORDS = ["a", "b", "c", "d", "e"]


def pairs(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 5))]
        lines.append(f"{' '.join(words)}\t{' '.join(reversed(words))}")
    return lines


@pytest.fixture(scope="module")
def translator(tmp_path_factory):
    """A small Transformer that learned to reverse words (trained once for the module)."""
    root = tmp_path_factory.mktemp("translator")
    for split, count in (("train", 400), ("test", 20)):
        (root / f"{split}.tsv").write_text("\n".join(pairs(count, len(split))) + "\n")
    config = {
        "seed": 0,
        "task": {"name": "translation", "train": str(root / "train.tsv"), "test": str(root / "test.tsv"),
                 "tokenizer": "word", "vocab_size": 20},
        "model": {"d_model": 32, "encoder": {"name": "transformer", "layers": 1, "heads": 2, "dropout": 0.0},
                  "decoder": {"name": "transformer", "layers": 1, "heads": 2, "dropout": 0.0}},
        "data": {"batch_tokens": 256, "max_target_len": 12},
        "train": {"steps": 500, "lr": 5e-3, "warmup_steps": 10, "eval_every": 500, "log_every": 50},
    }
    seqkit.train(config, out=root / "run", test=False)
    return root


def invoke(*args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


def test_generate_arguments_stdin_and_input_file(translator):
    run = translator / "run"
    result = invoke("generate", run, "a b c", "d e")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["c b a", "e d"]
    result = invoke("generate", run, input="a b c\n\nd e\n")  # an empty line gives an empty output
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["c b a", "", "e d"]
    result = invoke("generate", run, "--beam", "2", "--nbest", "2", input="a b\n\n")  # N lines each
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 4, result.output
    assert result.stdout.splitlines()[2:] == ["", ""]
    (translator / "inputs.txt").write_text("a b c\nzz a\n")  # unknown words map to unk
    result = invoke("generate", run, "--input", translator / "inputs.txt", "--format", "jsonl")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["input"] for r in records] == ["a b c", "zz a"] and records[0]["output"] == "c b a"
    assert all(isinstance(r["score"], float) and r["score"] < 0 for r in records)


def test_beam_nbest_scores_agree_with_score(translator):
    run = translator / "run"
    result = invoke("generate", run, "a b c d", "--beam", "4", "--nbest", "3", "--scores")
    assert result.exit_code == 0, result.output
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert len(lines) == 3 and lines[0][1] == "d c b a"
    values = [float(score) for score, _ in lines]
    assert values == sorted(values, reverse=True)
    data = translator / "rescore.tsv"
    data.write_text("".join(f"a b c d\t{text}\n" for _, text in lines))
    scored = invoke("score", run, "--data", data)
    assert scored.exit_code == 0, scored.output
    assert [float(v) for v in scored.stdout.splitlines()] == pytest.approx(values, abs=1e-3)
    assert "mean log-probability" in scored.stderr


def test_sampling_is_seeded(translator):
    run = translator / "run"
    draws = [invoke("generate", run, "a b c d e", "--sample", "--temperature", "3", "--seed", seed).stdout
             for seed in (1, 1, 2, 3)]
    assert draws[0] == draws[1] and len(set(draws)) > 1


def test_interactive_reads_until_end_of_input(translator):
    result = invoke("generate", translator / "run", "--interactive", input="a b\nc\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["b", "a", "c"]


def test_attention_map_png(translator):
    png = translator / "attention.png"
    result = invoke("generate", translator / "run", "a b c", "--attention", png)
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:4] == b"\x89PNG" and result.stdout.strip() == "c b a"
    model = seqkit.load(translator / "run")
    generation, attention = model.attention("a b c")
    assert attention.source_tokens == ["a", "b", "c"] and attention.target_tokens[-1] == "<eos>"
    assert attention.weights.shape == (len(generation.tokens) + 1, 3)
    torch.testing.assert_close(attention.weights.sum(1), torch.ones(attention.weights.size(0)))
    assert model.model.decoder.record_attention is False  # switched back off
    assert invoke("generate", translator / "run", "a", "b", "--attention", png).exit_code == 2


def test_python_api_generate_and_score(translator):
    model = seqkit.load(translator / "run")
    state = torch.random.get_rng_state()
    assert model.generate(["a b c", "", "e"]) == ["c b a", "", "e"]
    assert model.generate(["a b c", "", "e"]) == ["c b a", "", "e"]  # repeatable
    best = model.generate(["a b c"], beam=4, nbest=2, scores=True)[0]
    assert best[0].text == "c b a" and best[0].score > best[1].score
    assert model.score(["a b c", "a b c", ""], ["c b a", best[1].text, "x"]) == pytest.approx(
        [best[0].score, best[1].score, None], abs=1e-4)
    sampled = model.generate(["a b c d e"] * 3, sample=True, seed=4)
    assert sampled == model.generate(["a b c d e"] * 3, sample=True, seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.is_grad_enabled() and not model.model.training  # global grad mode untouched


def test_beam_search_on_a_trained_model_equals_the_reference(translator):
    """A trained model is peaked, with early end-of-sequence mass: where a stopping rule that quits
    once ``beam`` hypotheses have finished returns short outputs."""
    from test_beam_search import reference_beam

    from seqkit.generate import SearchConfig, generate
    from seqkit.inference import prepare

    model = seqkit.load(translator / "run")
    texts = [line.split("\t")[0] for line in pairs(12, 99)]
    sources = prepare(model.task, model.config, texts).sources
    for settings in ({"beam": 4, "nbest": 2}, {"beam": 3, "length_penalty": 1.0}):
        config = SearchConfig(max_len=12, **settings)
        for source in sources:
            with torch.inference_mode():
                mask = torch.ones(1, source.size(0), dtype=torch.bool)
                found = generate(model.model, source[None], mask, config)[0]
                expected = reference_beam(model.model, model.model.encode(source[None], mask), config)
            assert [h.tokens for h in found] == [tokens for tokens, _ in expected]
    greedy = model.generate(texts, scores=True)
    beam = model.generate(texts, beam=4, scores=True)
    assert all(b.score >= g.score - 1e-4 for g, b in zip(greedy, beam, strict=True))


@pytest.mark.parametrize(("args", "message"), [
    (["--beam", "0"], "--beam: must be an integer >= 1"),
    (["--nbest", "3"], "--nbest: 3 is above the beam size 1"),
    (["--top-p", "0"], "--top-p: must be in (0, 1]"),
    (["--batch-size", "0"], "--batch-size: must be at least 1"),
    (["--max-len", "0"], "--max-len: must be an integer >= 1, got 0"),
])
def test_bad_options_are_one_line_errors(translator, args, message):
    result = invoke("generate", translator / "run", "a", *args)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"seqkit: error: {message}" or message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("args", "flag"), [
    (["--max-len", "5000"], "--max-len"), (["--sample", "--temperature", "inf"], "--temperature"),
    (["--sample", "--temperature", "nan"], "--temperature"), (["--sample", "--top-p", "nan"], "--top-p"),
    (["--beam", "2", "--length-penalty", "inf"], "--length-penalty"),
    (["--length-penalty", "nan"], "--length-penalty"),
    (["--sample", "--seed", str(2**70)], "--seed"), (["--sample", "--seed", "-5"], "--seed"),
    (["--batch-size", "0"], "--batch-size"), (["--batch-size", "-3"], "--batch-size"),
    (["--min-len", "9", "--no-repeat-ngram", "1", "--max-len", "12"], "--min-len"),
    (["--beam", "3", "--min-len", "9", "--no-repeat-ngram", "1", "--max-len", "12"], "--min-len"),
])
def test_generation_options_are_one_line_errors_naming_the_flag(translator, args, flag):
    result = invoke("generate", translator / "run", "a b", *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"seqkit: error: {flag}"), result.stderr
    assert result.stdout == ""


def test_non_utf8_input_names_the_file_and_line(translator):
    bad = translator / "bad.txt"
    bad.write_bytes(b"a b\nc \xff\xfe d\n")
    for args, name in ((["--input", bad], f"{bad}:2"), ([], "<stdin>:2")):
        result = invoke("generate", translator / "run", *args, input=bad.read_bytes() if not args else None)
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"seqkit: error: {name}: not UTF-8"), result.stderr


def test_score_options_are_one_line_errors(translator):
    data = translator / "score.tsv"
    data.write_text("a b\tb a\n")
    for args, start in ((["--batch-size", "0"], "--batch-size"), (["--batch-size", "-1"], "--batch-size")):
        result = invoke("score", translator / "run", "--data", data, *args)
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"seqkit: error: {start}"), result.stderr
    bad = translator / "bad.tsv"
    bad.write_bytes(b"a b\tb a\n\xff a\ta\n")
    result = invoke("score", translator / "run", "--data", bad)
    assert result.exit_code == 2 and result.stderr.startswith(f"seqkit: error: {bad}:2")
    assert len(result.stderr.strip().splitlines()) == 1


def test_python_api_takes_one_text_or_a_list(translator):
    model = seqkit.load(translator / "run")
    assert model.generate("a b c") == "c b a"
    assert model.generate(("a b c", "e")) == ["c b a", "e"]
    one = model.generate("a b c", beam=3, nbest=2, scores=True)
    assert len(one) == 2 and one[0].text == "c b a"
    assert model.generate("a b c", scores=True).text == "c b a"
    assert model.score("a b c", "c b a") == pytest.approx(one[0].score, abs=1e-4)
    assert model.score(["a b c"], ["c b a"]) == pytest.approx([one[0].score], abs=1e-4)
    generation, attention = model.attention("a b c")
    assert generation.text == "c b a"
    for call, name in ((lambda: model.generate(7), "texts"), (lambda: model.generate(["a", 7]), "texts"),
                       (lambda: model.generate(None), "texts"), (lambda: model.score("a", ["b"]), "targets"),
                       (lambda: model.score(["a"], [b"b"]), "targets"), (lambda: model.score(3), "sources"),
                       (lambda: model.attention(["a b"]), "text"), (lambda: model.attention(None), "text")):
        with pytest.raises(seqkit.errors.ConfigError, match=f"^{name}") as caught:
            call()
        assert "\n" not in str(caught.value)


def test_missing_files_and_plugins(translator, tmp_path):
    assert invoke("generate", tmp_path / "nope", "a").exit_code == 2
    assert invoke("score", translator / "run", "--data", tmp_path / "nope.tsv").exit_code == 2
    result = invoke("--disable-plugin", "seqkit_transformer", "generate", translator / "run", "a")
    assert result.exit_code == 2
    assert "needs encoder 'transformer' from plugin seqkit_transformer (seqkit " in result.stderr


def test_language_model_continues_a_prompt(tmp_path):
    text = tmp_path / "train.txt"
    text.write_text("\n".join(["a b c d e"] * 50) + "\n")
    config = {"seed": 0, "task": {"name": "language_model", "train": str(text), "tokenizer": "word"},
              "model": {"d_model": 32, "decoder": {"name": "gru", "attention": "none", "bridge": "none"}},
              "data": {"batch_tokens": 128, "max_target_len": 10},
              "train": {"steps": 60, "lr": 1e-2, "warmup_steps": 5, "eval_every": 60}}
    seqkit.train(config, out=tmp_path / "lm", test=False)
    result = invoke("generate", tmp_path / "lm", "a b", "c", "", "--scores")
    assert result.exit_code == 0, result.output
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert [text for _, text in lines] == ["a b c d e", "c d e", "a b c d e"]
    model = seqkit.load(tmp_path / "lm")
    # the continuation's score is the whole text's minus the prompt's
    assert float(lines[2][0]) == pytest.approx(model.score(["a b c d e"])[0], abs=1e-4)


@pytest.mark.parametrize("attention", ["general", "additive"])
def test_recurrent_attention_maps(translator, tmp_path, attention):
    """Luong (after the fused RNN) and Bahdanau (inside the cell loop) weights both reach the map."""
    config = {"seed": 0, "task": {"name": "translation", "train": str(translator / "train.tsv"),
                                  "tokenizer": "word", "vocab_size": 20},
              "model": {"d_model": 16, "encoder": {"name": "gru"},
                        "decoder": {"name": "lstm", "attention": attention}},
              "data": {"batch_tokens": 128, "max_target_len": 8},
              "train": {"steps": 2, "eval_every": 2}}
    seqkit.train(config, out=tmp_path / "run", test=False)
    generation, attention_map = seqkit.load(tmp_path / "run").attention("a b c d")
    assert attention_map.source_tokens == ["a", "b", "c", "d"]
    assert attention_map.weights.shape == (len(generation.tokens) + 1, 4)
    torch.testing.assert_close(attention_map.weights.sum(1), torch.ones(len(generation.tokens) + 1))


def test_a_classifier_prints_labels(tmp_path):
    lines = [f"{w} {w}\t{'pos' if w in 'abc' else 'neg'}" for w in "abcdef"] * 20
    (tmp_path / "train.tsv").write_text("\n".join(lines) + "\n")
    config = {"seed": 0, "task": {"name": "classification", "train": str(tmp_path / "train.tsv"),
                                  "tokenizer": "word"},
              "model": {"d_model": 16, "encoder": {"name": "gru"}},
              "data": {"batch_tokens": 64}, "train": {"steps": 60, "lr": 1e-2, "eval_every": 60}}
    seqkit.train(config, out=tmp_path / "run", test=False)
    result = invoke("generate", tmp_path / "run", "a a", "f f", "b")
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["pos", "neg", "pos"]
    empty = invoke("generate", tmp_path / "run", "")
    assert empty.exit_code == 2 and "input 1: empty" in empty.stderr
    assert invoke("score", tmp_path / "run", "--data", tmp_path / "train.tsv").exit_code == 2


# -- unknown input tokens ------------------------------------------------------------------------


def test_each_generation_counts_the_unknown_tokens_of_its_input(translator):
    model = seqkit.load(translator / "run")
    found = model.generate(["a b c", "zz a", "Q R b", ""], scores=True)
    assert [g.unknown_tokens for g in found] == [0, 1, 2, 0]
    nbest = model.generate("zz yy a", beam=2, nbest=2, scores=True)
    assert [g.unknown_tokens for g in nbest] == [2, 2]


def test_jsonl_says_how_many_input_tokens_were_unknown(translator):
    result = invoke("generate", translator / "run", "a b c", "zz a", "--format", "jsonl")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["unknown_tokens"] for r in records] == [0, 1]
    result = invoke("generate", translator / "run", "zz a", "--format", "jsonl", "--beam", "2",
                    "--nbest", "2")
    record = json.loads(result.stdout)
    assert record["unknown_tokens"] == 1 and len(record["outputs"]) == 2
    assert result.stderr == ""  # jsonl carries the count; no warning beside it


def test_text_output_warns_once_about_unknown_tokens(translator):
    result = invoke("generate", translator / "run", "--batch-size", "2",
                    input="a b c\nZZ a\nd e\nQ R b\n1 2 3\n")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 5  # outputs unchanged, on stdout
    warnings = result.stderr.strip().splitlines()
    assert warnings == ["seqkit: warning: 3 of 5 inputs hold tokens the model does not know (<unk>): "
                        "inputs 2, 4, 5 (words or characters its training data did not have); their "
                        "outputs are guesses"], result.stderr
    clean = invoke("generate", translator / "run", "a b c", "d e")
    assert clean.exit_code == 0 and clean.stderr == ""


def test_interactive_warns_beside_each_input_with_unknown_tokens(translator):
    result = invoke("generate", translator / "run", "--interactive", input="a b\nZZ YY a\n")
    assert result.exit_code == 0, result.output
    assert result.stderr.count("seqkit: warning:") == 1
    assert ("seqkit: warning: the input holds 2 tokens the model does not know (<unk>: words or "
            "characters its training data did not have); its output is a guess") in result.stderr


# -- outputs holding line breaks ------------------------------------------------------------------


def unescape(line: str) -> str:
    """The inverse of the text output's escaping (the rule of task.escapes): \\t \\n \\r \\\\."""
    import re

    return re.sub(r"\\(.)", lambda m: {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}[m.group(1)], line)


@pytest.fixture
def multiline_outputs(monkeypatch):
    """The translator's outputs with their spaces turned into a newline, a CR and a tab, and a
    backslash at the end: "c b a" comes out as "c\\nb\\r\\ta\\\\"."""
    from seqkit_tasks.translation import TranslationTask

    decode = TranslationTask.decode

    def multiline(self, output):
        text = decode(self, output)
        return text.replace(" ", "\n", 1).replace(" ", "\r\t", 1) + "\\"

    monkeypatch.setattr(TranslationTask, "decode", multiline)
    return {"a b c": "c\nb\r\ta\\", "d e": "e\nd\\"}


def test_text_output_escapes_line_breaks_one_line_per_input(translator, multiline_outputs):
    run = translator / "run"
    result = invoke("generate", run, "a b c", "d e")
    assert result.exit_code == 0, result.output
    lines = result.stdout.split("\n")
    assert lines == ["c\\nb\\r\\ta\\\\", "e\\nd\\\\", ""]  # two inputs, two lines
    assert [unescape(line) for line in lines[:2]] == [multiline_outputs["a b c"], multiline_outputs["d e"]]
    result = invoke("generate", run, "--input", "-", "--scores", input="a b c\nd e\n")
    assert result.exit_code == 0, result.output
    lines = result.stdout.split("\n")[:-1]
    assert len(lines) == 2 and all(line.count("\t") == 1 for line in lines)  # score, tab, output
    assert [unescape(line.split("\t")[1]) for line in lines] == list(multiline_outputs.values())
    result = invoke("generate", run, "a b c", "d e", "--beam", "2", "--nbest", "2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.split("\n")[:-1]
    assert len(lines) == 4 and lines[0] == "c\\nb\\r\\ta\\\\" and lines[2] == "e\\nd\\\\"
    result = invoke("generate", run, "--interactive", input="a b c\nd e\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.split("\n") == ["c\\nb\\r\\ta\\\\", "e\\nd\\\\", ""]


def test_jsonl_output_keeps_line_breaks_raw(translator, multiline_outputs):
    result = invoke("generate", translator / "run", "a b c", "d e", "--format", "jsonl")
    assert result.exit_code == 0, result.output
    lines = result.stdout.split("\n")[:-1]
    assert len(lines) == 2
    assert [json.loads(line)["output"] for line in lines] == list(multiline_outputs.values())


def test_help_of_format_names_the_escaping():
    result = invoke("generate", "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "\\n" in text and "\\\\" in text and "jsonl" in text and "raw" in text
