"""`seqkit config check` means "this will run": every check `seqkit run` makes before its first
step, made without training, each failure one line naming the key (file:line where it is in the
file) and exit status 2."""

from __future__ import annotations

import textwrap
import time

import pytest
import torch
from click.testing import CliRunner

from seqkit.cli import cli
from seqkit.config import load_config
from seqkit.errors import ConfigError, SeqkitError
from seqkit.plugins import make_plugin_manager
from seqkit.preflight import check_run_config, metric_names

GOOD = """
seed = 1
[task]
name = "reverse"
max_len = 6
train_size = 50
valid_size = 10
test_size = 10
[model]
d_model = 32
[model.encoder]
name = "lstm"
[model.decoder]
name = "transformer"
layers = 1
heads = 2
[train]
steps = 2
"""


def write(tmp_path, text: str, name: str = "run.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def check(path, *overrides: str):
    sets = [arg for override in overrides for arg in ("--set", override)]
    return CliRunner().invoke(cli, ["config", "check", str(path), *sets])


def one_line_error(result, *fragments: str) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seqkit: error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_a_good_config_passes(tmp_path):
    result = check(write(tmp_path, GOOD))
    assert result.exit_code == 0, result.output


def test_the_api_function_returns_quietly_on_a_good_config(tmp_path):
    manager = make_plugin_manager()
    config = load_config(write(tmp_path, GOOD), manager=manager)
    check_run_config(config, manager)


# (replace this text in GOOD, with that) -> fragments of the one-line error
BAD = [
    ("seed = 1", "seed = 18446744073709551616", ["run.toml:1: seed:", "64-bit"]),
    ("seed = 1", "seed = nan", ["run.toml:1: seed:"]),
    ("steps = 2", "steps = 2\nlr = nan", ["run.toml:18: train.lr:", "finite"]),
    ("steps = 2", "steps = 2\nlr = inf", ["run.toml:18: train.lr:", "finite"]),
    ("steps = 2", "steps = 2\nlr = 1e308", ["run.toml:18: train.lr:"]),
    ("steps = 2", "steps = 2\nclip_norm = nan", ["run.toml:18: train.clip_norm:"]),
    ("steps = 2", "steps = 2\nbetas = [0.9, nan]", ["run.toml:18: train.betas[1]:"]),
    ("heads = 2", "heads = 2\ndropout = nan", ["run.toml:16: model.decoder.dropout:"]),
    ("seed = 1", 'seed = 1\nbackend = "tpu"', ["run.toml:2: backend:", "unknown backend 'tpu'"]),
    ("steps = 2", 'steps = 2\nbest_metric = "exact_mach"',
     ["run.toml:18: train.best_metric:", "did you mean 'exact_match'"]),
    ("steps = 2", 'steps = 2\nbest_metric = "blue"', ["train.best_metric:", "exact_match", "loss"]),
    ('[model.decoder]\nname = "transformer"\nlayers = 1\nheads = 2\n', "",
     ["model.decoder:", "needs a decoder"]),
    ("heads = 2", "heads = 3", ["run.toml:15: model.decoder.heads:", "does not divide"]),
    ("heads = 2", 'heads = 2\npositions = "learned"\nmax_positions = 8',
     ["model.decoder", "max_target_len", "max_positions 8"]),
    ("train_size = 50", "train_size = 1000000000000", ["run.toml:5: task.train_size:", "GB"]),
    ("layers = 1", "layers = 1000000000", ["run.toml:14: model.decoder.layers:"]),
    ("d_model = 32", "d_model = 1000000000", ["run.toml:9: model.d_model:", "GB"]),
    ("max_len = 6", "max_len = 6\nsymbols = 1000000000000", ["task.symbols:", "GB"]),
    ("[train]", "[data]\nmax_target_len = 1\n[train]", ["data.max_target_len:", "bos and eos"]),
    ("seed = 1", 'seed = 1\nprecision = "fp16"\nbackend = "cpu"', ["precision"]),
    # sinusoidal positions take any length, but evaluation decodes through a cache of max_positions
    ("[train]", "[data]\nmax_target_len = 100000\n[train]",
     ["model.decoder", "data.max_target_len = 100000", "max_positions 1024"]),
    ("max_len = 6", "max_len = 100000000", ["task.max_len:", "GB"]),  # not blamed on train_size
]


@pytest.mark.parametrize("old, new, fragments", BAD, ids=[b[1][:40] for b in BAD])
def test_bad_configs_are_one_line_naming_the_key(tmp_path, old, new, fragments):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    started = time.monotonic()
    line = one_line_error(check(path), *fragments)
    assert time.monotonic() - started < 60, line  # refused before allocating, not after a long build


def test_an_empty_file_and_a_file_without_a_task(tmp_path):
    one_line_error(check(write(tmp_path, "")), "task: missing [task] table", "reverse")
    one_line_error(check(write(tmp_path, "seed = 3\n[model.encoder]\nname = \"gru\"\n")),
                   "task: missing [task] table")


def test_an_unavailable_backend(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("cuda is available here")
    one_line_error(check(write(tmp_path, 'backend = "cuda"\n' + GOOD)), "run.toml:1: backend:",
                   "not available")


def test_a_missing_data_file_is_named(tmp_path):
    path = write(tmp_path, GOOD.replace('name = "reverse"\nmax_len = 6\ntrain_size = 50\n'
                                        'valid_size = 10\ntest_size = 10',
                                        'name = "translation"\ntrain = "none.tsv"\ntokenizer = "char"'))
    one_line_error(check(path), "none.tsv", "no such file")


def test_a_task_without_a_train_split(tmp_path):
    (tmp_path / "valid.tsv").write_text("a b\tb a\n")
    path = write(tmp_path, GOOD.replace('name = "reverse"\nmax_len = 6\ntrain_size = 50\n'
                                        'valid_size = 10\ntest_size = 10',
                                        'name = "translation"\nvalid = "valid.tsv"\ntokenizer = "char"'))
    one_line_error(check(path), "task.train")


def test_a_non_utf8_data_file_names_file_and_line(tmp_path):
    (tmp_path / "train.tsv").write_bytes(b"a b\tb a\n\xff\xfe\tx\n")
    path = write(tmp_path, GOOD.replace('name = "reverse"\nmax_len = 6\ntrain_size = 50\n'
                                        'valid_size = 10\ntest_size = 10',
                                        'name = "translation"\ntrain = "train.tsv"\ntokenizer = "char"'))
    one_line_error(check(path), "train.tsv:2", "UTF-8")


def test_overrides_are_checked_and_blamed_on_set(tmp_path):
    path = write(tmp_path, GOOD)
    one_line_error(check(path, "train.lr=nan"), "--set train.lr:")
    one_line_error(check(path, "seed=-18446744073709551616"), "--set seed:")
    one_line_error(check(path, "model.decoder.heads=3"), "--set model.decoder.heads:")


def test_a_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + textwrap.dedent(GOOD).lstrip().encode())
    assert check(path).exit_code == 0, check(path).output
    bad = tmp_path / "bom-bad.toml"
    text = textwrap.dedent(GOOD).lstrip().replace("heads = 2", "headz = 2")
    bad.write_bytes(b"\xef\xbb\xbf" + text.encode())
    one_line_error(check(bad), "bom-bad.toml:15: model.decoder.headz: unknown key")


FACTORY_PLUGIN = """
from dataclasses import dataclass
from seqkit import hookimpl
from seqkit.errors import ConfigError
from seqkit_tasks.synthetic import ReverseTask, SyntheticConfig

@dataclass
class PickyConfig(SyntheticConfig):
    flavour: str = "plain"

def build(config):
    if config.flavour != "plain":
        raise ConfigError(f"only 'plain' is made, got {config.flavour!r}", key="flavour")
    return ReverseTask(config)

@hookimpl
def register_tasks(register):
    register("picky", build, PickyConfig)
"""


def test_task_factory_errors_keep_file_and_line(tmp_path, install_plugin):
    install_plugin(FACTORY_PLUGIN)
    path = write(tmp_path, GOOD.replace('name = "reverse"', 'name = "picky"\nflavour = "sour"'))
    one_line_error(check(path), "run.toml:4: task.flavour: only 'plain' is made")


def test_api_errors_are_seqkit_errors_with_file_and_line(tmp_path):
    manager = make_plugin_manager()
    config = load_config(write(tmp_path, GOOD.replace("heads = 2", "heads = 3")), manager=manager)
    with pytest.raises(ConfigError, match=r"run\.toml:15: model\.decoder\.heads:"):
        check_run_config(config, manager)
    config = load_config(write(tmp_path, GOOD.replace("layers = 1", "layers = 1000000000")), manager=manager)
    with pytest.raises(SeqkitError, match="model.decoder.layers"):
        check_run_config(config, manager)


@pytest.mark.parametrize("task", ["reverse", "classification", "regression", "language_model", "translation"])
def test_metric_names_match_what_evaluation_reports(tmp_path, task, one_thread):
    """The names config check accepts for best_metric are the names the trainer will see."""
    import numpy as np

    from seqkit.api import build_task
    from seqkit.data import encode_split
    from seqkit.evaluate import evaluate
    from seqkit.model import build_model

    files = {
        "classification": ("train.tsv", "good movie\tpos\nbad film\tneg\n"),
        "language_model": ("train.txt", "hello world\nanother line\n"),
        "translation": ("train.tsv", "a b\tb a\nc d\td c\n"),
    }
    table = {"name": task}
    model = {"d_model": 16, "encoder": {"name": "gru"}, "decoder": {"name": "gru", "attention": "none"}}
    if task == "reverse":
        table.update(train_size=20, valid_size=0, test_size=0)
    elif task == "regression":
        np.savez(tmp_path / "train.npz", inputs=np.zeros((4, 3, 1)), targets=np.arange(4.0))
        table["train"] = str(tmp_path / "train.npz")
    else:
        name, text = files[task]
        (tmp_path / name).write_text(text)
        table.update(train=str(tmp_path / name), tokenizer="char")
    if task in ("classification", "regression"):
        del model["decoder"]
    if task == "language_model":
        del model["encoder"]
    manager = make_plugin_manager()
    config = load_config({"task": table, "model": model}, manager=manager)
    built = build_task(config, manager)
    built.fit(built.examples("train"))
    split = encode_split(built, "train", config.data)
    net = build_model(config.model, built.model_shape(), manager)
    metrics, _ = evaluate(net, built, split, batch_tokens=4096, max_len=8)
    assert set(metric_names(built, has_valid=True)) == set(metrics)
    assert set(metric_names(built, has_valid=False)) >= {f"train_{k}" for k in metrics} | set(metrics)
