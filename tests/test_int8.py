"""int8 inference on the CPU (seqkit.quantize): every built-in architecture loads with
precision "int8", its linear and recurrent layers really quantized, and generates what fp32
generates on an easy task (most outputs equal: int8 rounds, so not all); eval runs; fp32 stays
as it was; a bad precision, and int8 on a device that is not the CPU, are one-line errors."""

from __future__ import annotations

import random

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import seqkit
from seqkit.cli import cli
from seqkit.errors import ConfigError
from seqkit.plugins import make_plugin_manager
from tests.backend_support import backend_plugin

pytestmark = pytest.mark.usefixtures("one_thread")

QUANTIZED = torch.ao.nn.quantized.dynamic
LETTERS = "abcdef"
WORDS = sorted({"".join(random.Random(n).choices(LETTERS, k=2 + n % 4)) for n in range(200)})
INPUTS = WORDS[:40]

# name -> (task, model, steps): every built-in encoder and decoder, each attention kind, the
# bridges, a tied output head, language models and a classifier
ARCHITECTURES = {
    "transformer": ("translation", {
        "share_embeddings": True, "tie_embeddings": True,
        "encoder": {"name": "transformer", "layers": 1, "heads": 2, "ffn_size": 64, "dropout": 0.0},
        "decoder": {"name": "transformer", "layers": 1, "heads": 2, "ffn_size": 64, "dropout": 0.0}}, 150),
    "lstm-general": ("translation", {
        "encoder": {"name": "lstm", "bidirectional": True},
        "decoder": {"name": "lstm", "attention": "general", "bridge": "linear"}}, 150),
    "gru-additive": ("translation", {
        "encoder": {"name": "gru"},
        "decoder": {"name": "gru", "attention": "additive", "bridge": "copy"}}, 150),
    "lstm-additive": ("translation", {
        "encoder": {"name": "transformer", "layers": 1, "heads": 2, "ffn_size": 64, "dropout": 0.0},
        "decoder": {"name": "lstm", "attention": "additive"}}, 150),
    "rnn-dot": ("translation", {
        "encoder": {"name": "rnn"}, "decoder": {"name": "rnn", "attention": "dot"}}, 150),
    "gru-lm": ("language_model", {"decoder": {"name": "gru", "attention": "none", "bridge": "none"}}, 100),
    "transformer-lm": ("language_model", {"decoder": {
        "name": "transformer", "layers": 1, "heads": 2, "ffn_size": 64, "cross_attention": False,
        "dropout": 0.0}}, 100),
    "lstm-classifier": ("classification", {"encoder": {"name": "lstm"}}, 100),
}


def _data(task: str) -> str:
    if task == "translation":  # reverse the letters
        return "".join(f"{w}\t{w[::-1]}\n" for w in WORDS)
    if task == "language_model":
        return "".join(f"{w} {w[::-1]}\n" for w in WORDS)
    return "".join(f"{w}\t{'a' if w.count('a') > w.count('b') else 'b'}\n" for w in WORDS)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """name -> a run folder trained briefly (seconds) on that architecture, made when first asked."""
    root, made = tmp_path_factory.mktemp("int8"), {}

    def run(name: str):
        if name not in made:
            task, model, steps = ARCHITECTURES[name]
            data = root / f"{name}.txt"
            data.write_text(_data(task))
            config = {"seed": 0, "task": {"name": task, "train": str(data), "test": str(data),
                                          "tokenizer": "char", "format": "text" if task == "language_model"
                                          else "tsv"},
                      "model": {"d_model": 32, "embedding_dropout": 0.0, **model},
                      "data": {"batch_tokens": 512},
                      "train": {"steps": steps, "lr": 1e-2, "warmup_steps": 10, "eval_every": steps}}
            if task == "translation":
                config["task"]["shared_vocab"] = True
            seqkit.train(config, out=root / name, test=False, samples=0)
            made[name] = root / name
        return made[name]
    return run


def quantizable(module: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in module.named_modules()
            if isinstance(m, (nn.Linear, nn.LSTM, nn.GRU, nn.RNN, nn.LSTMCell, nn.GRUCell, nn.RNNCell))]


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_each_architecture_generates_int8_mostly_as_fp32(runs, name):
    run = runs(name)
    fp32, int8 = seqkit.load(run), seqkit.load(run, precision="int8")
    assert int8.precision == "int8" and int8.int8_layers.quantized
    kept = set(int8.int8_layers.kept_float)
    # every float linear or recurrent layer left in the encoder, decoder or head is one said to be kept
    left = {n for n, _ in quantizable(int8.model) if n.split(".")[0] in ("encoder", "decoder", "head")}
    assert left == kept
    for path in int8.int8_layers.quantized:
        assert type(int8.model.get_submodule(path)).__module__.startswith("torch.ao.nn.quantized.dynamic")
    prompts = INPUTS if ARCHITECTURES[name][0] != "language_model" else [w[:2] for w in INPUTS]
    expected, found = fp32.generate(prompts), int8.generate(prompts)
    agree = sum(a == b for a, b in zip(expected, found, strict=True)) / len(prompts)
    assert agree >= 0.8, (name, agree, expected[:5], found[:5])
    if ARCHITECTURES[name][0] == "translation":  # it learned the task (else agreement means little)
        right = sum(e == w[::-1] for e, w in zip(expected, INPUTS, strict=True))
        assert right >= 0.5 * len(INPUTS), expected[:5]
        beam = int8.generate(INPUTS[:4], beam=3)
        assert all(isinstance(b, str) for b in beam)
        scores = int8.score(INPUTS[:4], expected[:4])
        torch.testing.assert_close(torch.tensor(scores), torch.tensor(fp32.score(INPUTS[:4], expected[:4])),
                                   atol=0.3, rtol=0.1)


def test_the_layers_are_really_int8(runs):
    """The recurrent layers torch can quantize are int8 modules; those it cannot stay float, named."""
    lstm = seqkit.load(runs("lstm-general"), precision="int8").model
    assert isinstance(lstm.encoder.rnn, QUANTIZED.LSTM)  # bidirectional, run over packed sequences
    assert isinstance(lstm.decoder.attention.query, QUANTIZED.Linear)
    assert isinstance(lstm.decoder.bridge.maps["h"][0], QUANTIZED.Linear)
    assert isinstance(lstm.head, QUANTIZED.Linear)
    assert isinstance(lstm.decoder.rnn, QUANTIZED.LSTM)  # cached steps run the int8 module
    gru = seqkit.load(runs("gru-additive"), precision="int8")
    assert isinstance(gru.model.encoder.rnn, QUANTIZED.GRU)
    assert all(isinstance(cell, QUANTIZED.GRUCell) for cell in gru.model.decoder.cells)
    assert isinstance(gru.model.decoder.attention.key, QUANTIZED.Linear)
    rnn = seqkit.load(runs("rnn-dot"), precision="int8")
    assert type(rnn.model.encoder.rnn) is nn.RNN
    assert "Elman" in rnn.int8_layers.kept_float["encoder.rnn"]
    transformer = seqkit.load(runs("transformer"), precision="int8").model
    layer = transformer.decoder.layers[0]
    assert all(isinstance(m, QUANTIZED.Linear) for m in (layer.attn.qkv, layer.cross.kv, layer.mlp.fc))
    # the tied head is an int8 copy; the embedding it was tied to stays a float lookup
    assert isinstance(transformer.head, QUANTIZED.Linear)
    assert transformer.target_embedding.weight.dtype == torch.float32


def test_a_subclass_of_a_torch_layer_stays_float(runs):
    """A plugin's subclass of nn.Linear has a forward of its own, which quantizing would drop."""
    from seqkit.quantize import quantize_int8

    class Scaled(nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x)

    model = seqkit.load(runs("transformer")).model
    head = Scaled(model.head.in_features, model.head.out_features, bias=False)
    head.weight = model.head.weight
    model.head = head
    layers = quantize_int8(model)
    assert model.head is head and "subclass" in layers.kept_float["head"]
    assert "decoder.layers.0.mlp.fc" in layers.quantized


def test_a_decoder_with_every_layer_quantized_still_finds_its_device(runs):
    """A GRU language model's decoder is one nn.GRU: quantized, it has no float parameter left to
    take zero states' device and dtype from; it keeps an empty float one."""
    model = seqkit.load(runs("gru-lm"), precision="int8")
    assert isinstance(model.model.decoder.rnn, QUANTIZED.GRU)
    like = next(model.model.decoder.parameters())
    assert like.dtype == torch.float32 and like.numel() == 0
    assert all(isinstance(text, str) and text for text in model.generate(["ab", "c"]))


def test_fp32_is_unchanged(runs):
    """The default loads float modules only, and computes what the checkpoint's own model does."""
    from seqkit import checkpoint as ckpt

    run = runs("transformer")
    model = seqkit.load(run)
    assert model.precision == "fp32" and model.int8_layers is None
    assert not any(type(m).__module__.startswith("torch.ao") for m in model.model.modules())
    reference = seqkit.load(run)
    tensors, _ = ckpt.load_tensors(model.path)
    ckpt.load_weights(reference.model, tensors, model.path)
    source, target = torch.tensor([[5, 6, 7, 8]]), torch.tensor([[1, 5, 6]])
    mask = torch.ones_like(source, dtype=torch.bool)
    with torch.inference_mode():
        assert torch.equal(model.model(source, mask, target), reference.model(source, mask, target))


def test_eval_int8_from_the_cli(runs):
    run = runs("lstm-general")
    fp32 = CliRunner().invoke(cli, ["eval", str(run), "--json"])
    int8 = CliRunner().invoke(cli, ["eval", str(run), "--json", "--precision", "int8"])
    assert fp32.exit_code == 0 and int8.exit_code == 0, int8.output
    import json

    before, after = json.loads(fp32.stdout), json.loads(int8.stdout)
    assert before.keys() == after.keys() and after["examples"] == len(WORDS)
    assert abs(after["exact_match"] - before["exact_match"]) <= 0.1
    assert after["loss"] == pytest.approx(before["loss"], rel=0.1, abs=0.02)


def test_a_regressor_of_float_features_evaluates_in_int8(tmp_path):
    """Float feature sequences: the feature projection stays float (an input layer, as the
    embeddings), the GRU encoder and the head are int8, and the metrics stay."""
    rows = []
    generator = random.Random(0)
    for _ in range(200):
        values = [round(generator.uniform(-1, 1), 2) for _ in range(generator.randint(2, 6))]
        rows.append(",".join(map(str, [round(sum(values), 2), *values])))
    (tmp_path / "sums.csv").write_text("\n".join(rows) + "\n")
    config = {"seed": 0, "task": {"name": "regression", "train": str(tmp_path / "sums.csv"),
                                  "test": str(tmp_path / "sums.csv")},
              "model": {"d_model": 32, "encoder": {"name": "gru"}},
              "train": {"steps": 100, "lr": 1e-2, "warmup_steps": 10, "eval_every": 100}}
    seqkit.train(config, out=tmp_path / "run", test=False, samples=0)
    fp32, int8 = seqkit.load(tmp_path / "run"), seqkit.load(tmp_path / "run", precision="int8")
    assert int8.int8_layers.quantized == ["encoder.rnn", "head"]
    assert type(int8.model.source_embedding.proj) is nn.Linear
    before, after = fp32.evaluate()[0], int8.evaluate()[0]
    assert before["r2"] > 0.8
    assert after["mse"] == pytest.approx(before["mse"], rel=0.05)


def test_generate_int8_from_the_cli(runs):
    run = runs("gru-additive")
    fp32 = CliRunner().invoke(cli, ["generate", str(run), *INPUTS[:10]])
    int8 = CliRunner().invoke(cli, ["generate", str(run), "--precision", "int8", *INPUTS[:10]])
    assert fp32.exit_code == 0 and int8.exit_code == 0, int8.output
    agree = sum(a == b for a, b in zip(fp32.stdout.splitlines(), int8.stdout.splitlines(), strict=True))
    assert agree >= 8


@pytest.mark.parametrize("command", [["generate", "x"], ["eval"]])
def test_a_bad_precision_is_one_line(runs, command):
    run = runs("gru-additive")
    result = CliRunner().invoke(cli, [command[0], str(run), *command[1:], "--precision", "int4"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "--precision" in lines[0] and "int4" in lines[0], result.output
    with pytest.raises(ConfigError, match=r"^precision: must be one of fp32, bf16, fp16, int8, got 'int4'$"):
        seqkit.load(run, precision="int4")


def test_int8_off_the_cpu_is_one_line(runs):
    run = runs("gru-additive")
    manager = make_plugin_manager(plugins=[("accel", backend_plugin("accel", "meta"))])
    result = CliRunner().invoke(cli, ["generate", str(run), "--backend", "accel", "--precision", "int8",
                                      "ab"], obj={"plugins": manager})
    assert result.exit_code == 2
    assert result.output.strip() == ("seqkit: error: --precision int8: runs on the CPU only, not on "
                                     "backend 'accel' (use --backend cpu)")
    # auto picks the CPU for int8, whatever else is available
    auto = CliRunner().invoke(cli, ["generate", str(run), "--precision", "int8", "ab"],
                              obj={"plugins": manager})
    assert auto.exit_code == 0, auto.output
    with pytest.raises(ConfigError, match=r"^precision: int8 inference runs on the CPU only, not on meta$"):
        seqkit.load(run, device="meta", precision="int8")


def test_a_decoder_that_reads_a_quantized_weight_is_named(runs, monkeypatch):
    """A decoder whose code reads a layer's weight itself fails at load, in one line naming it."""
    from seqkit_recurrent.decoder import RecurrentDecoder

    run = runs("gru-lm")
    monkeypatch.setattr(RecurrentDecoder, "_parameter", lambda self: self.rnn.weight_ih_l0)
    assert seqkit.load(run).generate("ab")  # fine in fp32
    with pytest.raises(ConfigError, match=r"^precision: int8: the decoder \(plugin seqkit_recurrent, "
                                          r"decoder 'gru'\) does not run with int8 layers: .*weight_ih_l0.*; "
                                          r"use fp32$"):
        seqkit.load(run, precision="int8")


def test_a_torch_without_dynamic_quantization_is_one_line(runs, monkeypatch):
    """torch marks torch.ao.quantization deprecated: the day it is gone, int8 says so."""
    import sys

    monkeypatch.setitem(sys.modules, "torch.ao.quantization", None)  # its import raises ImportError
    with pytest.raises(ConfigError, match=r"^precision: int8 needs torch's dynamic quantization \(torch.ao."
                                          r"quantization\), which torch .* does not have; use fp32$"):
        seqkit.load(runs("gru-lm"), precision="int8")
