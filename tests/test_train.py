"""Training end to end on synthetic tasks: run, resume bit for bit, Ctrl-C, NaN, checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

import seqkit
from seqkit import checkpoint as ckpt
from seqkit.cli import cli
from seqkit.errors import CheckpointError
from seqkit.run_folder import RunFolder
from seqkit.trainer import TrainingError, learning_rate


def tiny(task="reverse", encoder="lstm", decoder="transformer", steps=12, **train):
    """A small seq2seq run on a synthetic task, with dropout on (so RNG state matters)."""
    return {
        "seed": 3,
        "task": {"name": task, "symbols": 6, "min_len": 2, "max_len": 5, "train_size": 64,
                 "valid_size": 16, "test_size": 16},
        "model": {"d_model": 16, "embedding_dropout": 0.1,
                  "encoder": {"name": encoder, "dropout": 0.1},
                  "decoder": {"name": decoder, "layers": 1, "heads": 2, "dropout": 0.1}
                  if decoder == "transformer" else {"name": decoder}},
        "data": {"batch_tokens": 64, "max_source_len": 8, "max_target_len": 8},
        "train": {"steps": steps, "lr": 3e-3, "warmup_steps": 2, "eval_every": 4, "log_every": 2,
                  "keep_last": 2, **train},
    }


def weights(folder) -> dict[str, torch.Tensor]:
    return ckpt.load_tensors(RunFolder(folder).latest_checkpoint())[0]


def test_run_trains_evaluates_and_writes_the_run_folder(tmp_path):
    result = seqkit.train(tiny(steps=8), out=tmp_path / "run", samples=3)
    folder = RunFolder(tmp_path / "run")
    assert result.summary["step"] == 8
    assert {"loss", "ppl", "token_accuracy", "exact_match"} <= set(result.test)
    assert 0.0 <= result.test["exact_match"] <= 1.0
    assert len(result.samples) == 3 and {"source", "reference", "prediction"} <= set(result.samples[0])
    assert folder.best.exists() and folder.config.exists()
    assert [p.name for p in folder.steps()] == ["step-0000004.safetensors", "step-0000008.safetensors"]
    records = folder.read_metrics()
    assert [r["step"] for r in records if "eval" in r] == [4, 8]
    assert all(r["loss"] > 0 for r in records)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from seqkit import trainer as train_module

    real = train_module.loss_parts

    def poisoned(model, batch, label_smoothing=0.0):
        parts = real(model, batch, label_smoothing)
        if train_module_step["n"] >= 5:
            parts.loss = parts.loss * float("nan")
        train_module_step["n"] += 1
        return parts

    train_module_step = {"n": 0}
    monkeypatch.setattr(train_module, "loss_parts", poisoned)
    expected = r"step 6: loss became nan; training stopped, nothing saved \(last good checkpoint: .*step-0+4"
    with pytest.raises(TrainingError, match=expected):
        seqkit.train(tiny(), out=tmp_path / "run", test=False)
    good = RunFolder(tmp_path / "run").latest_checkpoint()
    assert good.name == "step-0000004.safetensors"
    assert all(torch.isfinite(t).all() for t in ckpt.load_tensors(good)[0].values())


def test_learning_rate_schedules():
    config = seqkit.load_config(tiny(lr=1.0, warmup_steps=4, steps=20, schedule="inverse_sqrt"))
    assert [learning_rate(config, s) for s in (1, 4, 16)] == [0.25, 1.0, 0.5]
    config.train.schedule = "cosine"
    assert learning_rate(config, 20) == pytest.approx(0.0) and learning_rate(config, 12) == pytest.approx(0.5)
    config.train.schedule = "constant"
    assert learning_rate(config, 19) == 1.0


def test_load_generate_eval_cli_average_and_plot(tmp_path):
    run = tmp_path / "run"
    seqkit.train(tiny(steps=8), out=run, test=False)
    model = seqkit.load(run)
    outputs = model.generate(["1 2 3", "4 zz 5", ""])  # unknown token zz -> unk, empty -> ""
    assert len(outputs) == 3 and all(isinstance(o, str) for o in outputs)

    runner = CliRunner()
    result = runner.invoke(cli, ["eval", str(run), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert {"loss", "ppl", "token_accuracy", "exact_match"} <= set(metrics)

    steps = RunFolder(run).steps()
    out = tmp_path / "avg.safetensors"
    assert runner.invoke(cli, ["average", *map(str, steps), "-o", str(out)]).exit_code == 0
    averaged, first, second = (ckpt.load_tensors(p)[0] for p in (out, *steps))
    for name in averaged:
        torch.testing.assert_close(averaged[name], (first[name] + second[name]) / 2)
    assert seqkit.load(out).generate(["1 2"])  # an averaged checkpoint loads like any other

    png = tmp_path / "curves.png"
    assert runner.invoke(cli, ["plot", str(run), "-o", str(png)]).exit_code == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_checkpoint_errors_are_one_line(tmp_path):
    run = tmp_path / "run"
    seqkit.train(tiny(steps=4), out=run, test=False)
    best = RunFolder(run).best
    tensors, meta = ckpt.load_tensors(best)

    newer = tmp_path / "newer.safetensors"
    ckpt.save_tensors(newer, tensors, {**meta, "format_version": 99, "seqkit_version": "9.0"})
    with pytest.raises(CheckpointError, match="checkpoint format 99; this seqkit .* upgrade seqkit"):
        seqkit.load(newer)

    foreign = tmp_path / "foreign.safetensors"
    mamba = {"kind": "encoder", "name": "mamba", "plugin": "seqkit_mamba", "distribution": "seqkit-mamba",
             "version": "2.1"}
    components = {**meta["components"], "encoder": mamba}
    ckpt.save_tensors(foreign, tensors, {**meta, "components": components})
    with pytest.raises(CheckpointError, match=r"needs encoder 'mamba' from plugin seqkit_mamba "
                                              r"\(seqkit-mamba 2.1\)"):
        seqkit.load(foreign)

    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(best.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        seqkit.load(truncated)
    absurd = tmp_path / "absurd.safetensors"
    absurd.write_bytes((10**15).to_bytes(8, "little") + b"{}")
    with pytest.raises(CheckpointError, match="corrupt safetensors header"):
        seqkit.load(absurd)
    result = CliRunner().invoke(cli, ["eval", str(absurd)])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1


def test_run_cli_prints_samples_and_summary(tmp_path):
    config = tmp_path / "copy.toml"
    config.write_text("""
seed = 1
[task]
name = "copy"
symbols = 5
min_len = 2
max_len = 4
train_size = 32
valid_size = 8
test_size = 8
[model]
d_model = 16
[model.encoder]
name = "gru"
[model.decoder]
name = "gru"
[data]
batch_tokens = 64
max_target_len = 8
[train]
steps = 4
eval_every = 2
""")
    result = CliRunner().invoke(cli, ["run", str(config), "--out", str(tmp_path / "run"),
                                      "--set", "train.lr=0.01"])
    assert result.exit_code == 0, result.output
    assert "test: loss" in result.stdout and "exact_match" in result.stdout and "->" in result.stdout
    bad = CliRunner().invoke(cli, ["run", str(config), "--set", "task.symbolz=3"])
    assert bad.exit_code == 2 and "task.symbolz: unknown key" in bad.stderr


def test_bad_data_and_task_errors_name_the_place(tmp_path):
    data = tmp_path / "train.tsv"
    data.write_text("one\tun\ntwo without a tab\n")
    config = tmp_path / "run.toml"
    config.write_text('[task]\nname = "translation"\ntrain = "train.tsv"\ntokenizer = "char"\n'
                      '[model.encoder]\nname = "gru"\n[model.decoder]\nname = "gru"\n')
    runner = CliRunner()
    result = runner.invoke(cli, ["run", str(config), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and f"{data}:2" in result.stderr, result.output
    data.unlink()
    result = runner.invoke(cli, ["run", str(config), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and str(data) in result.stderr
    result = runner.invoke(cli, ["run", str(config), "--set", "task.name=translate"])
    assert result.exit_code == 2 and "unknown task 'translate'" in result.stderr
    assert "did you mean 'translation'" in result.stderr
    result = runner.invoke(cli, ["run", str(config), "--set", "task.symbols=4"])
    assert result.exit_code == 2 and "task.symbols: unknown key" in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing was half-written


def test_eval_on_another_data_file(tmp_path):
    lines = ["one\tun", "two\tdeux", "three\ttrois", "four\tquatre", "five\tcinq", "six\tsix"]
    (tmp_path / "train.tsv").write_text("\n".join(lines) + "\n")
    (tmp_path / "other.tsv").write_text("\n".join(lines[:2]) + "\n")
    config = {"task": {"name": "translation", "train": str(tmp_path / "train.tsv"), "tokenizer": "char"},
              "model": {"d_model": 16, "encoder": {"name": "gru"}, "decoder": {"name": "gru"}},
              "data": {"max_target_len": 12}, "train": {"steps": 2, "eval_every": 2}}
    seqkit.train(config, out=tmp_path / "run", test=False)
    result = CliRunner().invoke(cli, ["eval", str(tmp_path / "run"), "--data", str(tmp_path / "other.tsv"),
                                      "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["examples"] == 2 and {"exact_match", "bleu", "chrf"} <= set(metrics)


def test_early_stopping_on_the_chosen_metric(tmp_path, monkeypatch):
    from seqkit import trainer as train_module

    scores = iter([0.5, 0.4, 0.3, 0.2, 0.1])  # exact match only gets worse after the first evaluation

    def fake_evaluate(model, task, split, **kwargs):
        return {"loss": 1.0, "exact_match": next(scores)}, []

    monkeypatch.setattr(train_module, "evaluate", fake_evaluate)
    result = seqkit.train(tiny(steps=40, eval_every=2, best_metric="exact_match", patience=2),
                          out=tmp_path / "run", test=False)
    assert result.summary["step"] == 6 and result.summary["best_step"] == 2
    assert ckpt.load_tensors(RunFolder(tmp_path / "run").best)[1]["step"] == 2
