"""Every public Python API function answers bad input with a SeqkitError of one clear line, never
a bare TypeError/KeyError/RuntimeError/ValueError from inside; an exception raised in a plugin's
code leaves the API as a PluginCodeError naming the plugin (still catchable as its built-in
class, as a ConfigError is a ValueError)."""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path

import pytest

import seqkit
from seqkit.errors import (
    BackendUnavailableError,
    CheckpointError,
    ConfigError,
    DataError,
    PluginCodeError,
    RunFolderError,
    SeqkitError,
)


def tiny(task="reverse", steps=2) -> dict:
    return {
        "seed": 3,
        "task": {"name": task, "symbols": 6, "min_len": 2, "max_len": 5, "train_size": 32,
                 "valid_size": 8, "test_size": 8},
        "model": {"d_model": 16, "encoder": {"name": "gru"}, "decoder": {"name": "gru"}},
        "data": {"batch_tokens": 64, "max_source_len": 8, "max_target_len": 8},
        "train": {"steps": steps, "lr": 3e-3, "warmup_steps": 1, "eval_every": 2, "log_every": 2},
    }


def translation(tmp_path: Path) -> dict:
    lines = "".join(f"{w} {v}\t{v} {w}\n" for w in ("one", "two", "three") for v in ("a", "b", "c"))
    for split in ("train", "valid", "test"):
        (tmp_path / f"{split}.tsv").write_text(lines, encoding="utf-8")
    return {"seed": 1,
            "task": {"name": "translation", "train": str(tmp_path / "train.tsv"),
                     "valid": str(tmp_path / "valid.tsv"), "test": str(tmp_path / "test.tsv"),
                     "tokenizer": "word"},
            "model": {"d_model": 8, "encoder": {"name": "gru"}, "decoder": {"name": "gru"}},
            "data": {"batch_tokens": 64, "max_source_len": 8, "max_target_len": 8},
            "train": {"steps": 1, "eval_every": 1, "eval_examples": 2}}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("api-errors")
    seqkit.train(tiny(), out=root / "run", test=False, progress=False)
    seqkit.train(translation(root), out=root / "translation", test=False, progress=False)
    (root / "empty").mkdir()
    (root / "note.txt").write_text("hello", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def model(scratch):
    return seqkit.load(scratch / "run")


def no_checkpoint(scratch: Path) -> Path:
    """A run folder whose run evaluated (metrics.jsonl says so) but whose checkpoints are gone."""
    folder = scratch / "no-checkpoint"
    if not folder.exists():
        shutil.copytree(scratch / "run", folder)
        for path in [folder / "best.safetensors", *(folder / "checkpoints").iterdir()]:
            path.unlink()
    return folder


# (name, call(scratch, model), expected class, fragment of the one line)
CASES = [
    # seqkit.train
    ("train config int", lambda s, m: seqkit.train(123, out=s / "a"), ConfigError,
     "config: must be a path (str or pathlib.Path), got int"),
    ("train config None", lambda s, m: seqkit.train(None, out=s / "a"), ConfigError,
     "config: must be a path"),
    ("train missing config", lambda s, m: seqkit.train(s / "missing.toml", out=s / "a"), ConfigError,
     "missing.toml: no such config file"),
    ("train folder as config", lambda s, m: seqkit.train(s / "empty", out=s / "a"), ConfigError,
     "a folder, not a config file"),
    ("train out int", lambda s, m: seqkit.train(tiny(), out=3), ConfigError, "out: must be a path"),
    ("train out is a file", lambda s, m: seqkit.train(tiny(), out=s / "note.txt"), RunFolderError,
     "is a file, not a run folder"),
    ("train overrides str", lambda s, m: seqkit.train(tiny(), out=s / "b", overrides="train.steps=1"),
     ConfigError, "overrides: must be a list of strings, got str"),
    ("train overrides [int]", lambda s, m: seqkit.train(tiny(), out=s / "b", overrides=[3]), ConfigError,
     "overrides[0]: must be a string, got int"),
    ("train unknown keyword key", lambda s, m: seqkit.train(tiny(), out=s / "b", train__stepz=1), ConfigError,
     "train.stepz: unknown key; did you mean 'steps'?"),
    ("train keyword not a value", lambda s, m: seqkit.train(tiny(), out=s / "b", train__steps=object()),
     ConfigError, "train__steps: object is not a config value"),
    ("train samples negative", lambda s, m: seqkit.train(tiny(), out=s / "c", samples=-1), ConfigError,
     "samples: must be an integer >= 0, got -1"),
    ("train samples str", lambda s, m: seqkit.train(tiny(), out=s / "c", samples="3"), ConfigError,
     "samples: must be an integer >= 0, got '3'"),
    ("train restart str", lambda s, m: seqkit.train(tiny(), out=s / "c", restart="yes"), ConfigError,
     "restart: must be True or False, got 'yes'"),
    ("train test None", lambda s, m: seqkit.train(tiny(), out=s / "c", test=None), ConfigError,
     "test: must be True or False, got None"),
    ("train manager int", lambda s, m: seqkit.train(tiny(), out=s / "c", manager=3), ConfigError,
     "manager: must be a seqkit PluginManager"),
    ("train progress int", lambda s, m: seqkit.train(tiny(), out=s / "c", progress=3), ConfigError,
     "progress: must be True, False or an object with some of the methods"),
    ("train bad task table", lambda s, m: seqkit.train({"task": 3}, out=s / "c"), ConfigError, "task: "),
    ("train run folder with no checkpoint", lambda s, m: seqkit.train(tiny(), out=no_checkpoint(s)),
     RunFolderError, "holds an earlier run but no readable checkpoint"),
    # seqkit.load
    ("load int", lambda s, m: seqkit.load(3), ConfigError, "run_or_checkpoint: must be a path"),
    ("load None", lambda s, m: seqkit.load(None), ConfigError, "run_or_checkpoint: must be a path"),
    ("load missing", lambda s, m: seqkit.load(s / "nope"), CheckpointError,
     "no such run folder or checkpoint"),
    ("load folder without checkpoint", lambda s, m: seqkit.load(s / "empty"), CheckpointError,
     "no checkpoint in this run folder"),
    ("load a text file", lambda s, m: seqkit.load(s / "note.txt"), CheckpointError, "note.txt"),
    ("load bad device name", lambda s, m: seqkit.load(s / "run", device="gpu0"), ConfigError,
     "device: 'gpu0' is not a device name"),
    ("load device missing here", lambda s, m: seqkit.load(s / "run", device="cuda:7"),
     BackendUnavailableError, "device: 'cuda:7' is not available here"),
    ("load device int", lambda s, m: seqkit.load(s / "run", device=7), ConfigError,
     "device: must be a device name"),
    ("load precision", lambda s, m: seqkit.load(s / "run", precision="fp64"), ConfigError,
     "precision: must be one of fp32, bf16, fp16, int8, got 'fp64'"),
    ("load manager int", lambda s, m: seqkit.load(s / "run", manager=3), ConfigError,
     "manager: must be a seqkit PluginManager"),
    # Model.generate
    ("generate int", lambda s, m: m.generate(3), ConfigError, "texts: must be a string or a list of strings"),
    ("generate [int]", lambda s, m: m.generate([1]), ConfigError, "texts[0]: must be a string, got int"),
    ("generate negative beam", lambda s, m: m.generate(["1 2"], beam=-1), ConfigError,
     "beam: must be an integer >= 1, got -1"),
    ("generate nbest above beam", lambda s, m: m.generate(["1 2"], nbest=3), ConfigError,
     "nbest: 3 is above the beam size 1"),
    ("generate temperature 0", lambda s, m: m.generate(["1 2"], sample=True, temperature=0), ConfigError,
     "temperature: must be > 0"),
    ("generate top_p 2", lambda s, m: m.generate(["1 2"], sample=True, top_p=2), ConfigError, "top_p: "),
    ("generate max_len str", lambda s, m: m.generate(["1 2"], max_len="9"), ConfigError, "max_len: "),
    ("generate min_len above max_len", lambda s, m: m.generate(["1 2"], min_len=9, max_len=3), ConfigError,
     "min_len: 9 is above max_len 3"),
    ("generate batch_size 0", lambda s, m: m.generate(["1 2"], batch_size=0), ConfigError, "batch_size: "),
    ("generate seed str", lambda s, m: m.generate(["1 2"], sample=True, seed="x"), ConfigError, "seed: "),
    # Model.score
    ("score int", lambda s, m: m.score(3), ConfigError, "sources: must be a string or a list of strings"),
    ("score targets int", lambda s, m: m.score(["1 2"], 3), ConfigError, "targets: must be a string"),
    ("score one source two targets", lambda s, m: m.score(["1 2"], ["1", "2"]), ConfigError,
     "one source for each target"),
    ("score batch_size 0", lambda s, m: m.score(["1 2"], ["2 1"], batch_size=0), ConfigError, "batch_size: "),
    # Model.attention
    ("attention list", lambda s, m: m.attention(["1 2"]), ConfigError, "attention takes one source string"),
    ("attention negative beam", lambda s, m: m.attention("1 2", beam=-1), ConfigError, "beam: "),
    ("attention unknown option", lambda s, m: m.attention("1 2", bogus=1), ConfigError,
     "attention: unknown option 'bogus'; options: beam"),
    # Model.evaluate
    ("evaluate unknown split", lambda s, m: m.evaluate("dev"), DataError, "unknown split 'dev'"),
    ("evaluate samples str", lambda s, m: m.evaluate("test", samples="2"), ConfigError, "samples: "),
    ("evaluate samples negative", lambda s, m: m.evaluate("test", samples=-2), ConfigError, "samples: "),
    # Model.use_data
    ("use_data split int", lambda s, m: m.use_data(3, s / "note.txt"), ConfigError,
     "split: must be a split name (str), got int"),
    ("use_data path int", lambda s, m: m.use_data("test", 3), ConfigError, "path: must be a path"),
    ("use_data no file option", lambda s, m: m.use_data("test", s / "note.txt"), ConfigError,
     "task 'reverse' has no file option 'test' to replace"),
    ("use_data missing file", lambda s, m: seqkit.load(s / "translation").use_data("test", s / "gone.tsv"),
     DataError, "gone.tsv: no such data file"),
    ("use_data folder", lambda s, m: seqkit.load(s / "translation").use_data("test", s / "empty"),
     DataError, "empty: a folder, not a data file"),
    # seqkit.get_backend
    ("get_backend unknown", lambda s, m: seqkit.get_backend("tpu"), BackendUnavailableError,
     "unknown backend 'tpu'; known:"),
    ("get_backend name int", lambda s, m: seqkit.get_backend(3), ConfigError,
     "backend: must be a backend name"),
    # seqkit.load_config, seqkit.make_plugin_manager
    ("load_config int", lambda s, m: seqkit.load_config(3), ConfigError, "config: must be a path"),
    ("load_config overrides [int]", lambda s, m: seqkit.load_config(tiny(), [3]), ConfigError,
     "overrides[0]: must be a string"),
    ("load_config manager int", lambda s, m: seqkit.load_config(tiny(), manager=3), ConfigError,
     "manager: must be a seqkit PluginManager"),
    ("get_backend manager int", lambda s, m: seqkit.get_backend("cpu", manager=3), ConfigError,
     "manager: must be a seqkit PluginManager"),
    ("make_plugin_manager disable int", lambda s, m: seqkit.make_plugin_manager(disable=3), ConfigError,
     "disable: must be plugin names"),
    ("make_plugin_manager disable [int]", lambda s, m: seqkit.make_plugin_manager(disable=["a", 3]),
     ConfigError, "disable[1]: must be a plugin name"),
]


@pytest.mark.parametrize(("name", "call", "expected", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_of_a_seqkit_error(name, call, expected, fragment, scratch, model):
    with pytest.raises(SeqkitError) as caught:
        call(scratch, model)
    error = caught.value
    assert isinstance(error, expected), f"{type(error).__name__}: {error}"
    text = str(error)
    assert fragment in text and "\n" not in text.strip(), text


def test_good_input_still_works(scratch, model):
    assert isinstance(model.generate("1 2 3"), str)  # one str is one input, its output alone
    assert model.generate("1 2 3") == model.generate(["1 2 3"])[0]
    assert len(model.generate(("1 2", "3 4"))) == 2
    assert isinstance(model.score("1 2", "2 1"), float)
    assert model.evaluate("test", samples=1)[1][0].keys() >= {"source", "prediction"}
    assert seqkit.load(str(scratch / "run"), device="cpu", precision="fp32").device.type == "cpu"
    translated = seqkit.load(scratch / "translation")
    translated.use_data("test", os.fspath(scratch / "test.tsv"))
    assert translated.evaluate("test")[0]["examples"] == 9


SHAKY = """
from seqkit import hookimpl
from seqkit_tasks.synthetic import ReverseTask, SyntheticConfig

BROKEN = ""  # which method raises: "encode_source", "decode" or "fit"

class Shaky(ReverseTask):
    name = "shaky"

    def fit(self, train):
        if BROKEN == "fit":
            raise ValueError("no symbols seen")
        return super().fit(train)

    def decode(self, output):
        if BROKEN == "decode":
            raise RuntimeError("lookup table is gone")
        return super().decode(output)

    def encode_source(self, source):
        if BROKEN == "encode_source":
            return {}["missing"]
        return super().encode_source(source)

@hookimpl
def register_tasks(register):
    register("shaky", Shaky, SyntheticConfig)
"""


def shaky(install_plugin):
    install_plugin(SHAKY, dist="seqkit-shaky", version="1.0", name="seqkit_shaky")
    return importlib.import_module(seqkit.make_plugin_manager().plugins["seqkit_shaky"].module)


def test_a_plugin_raising_inside_the_api_is_a_plugin_code_error_naming_it(install_plugin, tmp_path):
    module = shaky(install_plugin)
    seqkit.train(tiny("shaky"), out=tmp_path / "run", test=False, progress=False)
    model = seqkit.load(tmp_path / "run")
    module.BROKEN = "encode_source"
    with pytest.raises(PluginCodeError, match=r"^plugin seqkit_shaky, task 'shaky': KeyError: 'missing'$") \
            as caught:
        model.generate(["1 2"])
    assert isinstance(caught.value, KeyError) and isinstance(caught.value.__cause__, KeyError)
    with pytest.raises(PluginCodeError, match=r"^plugin seqkit_shaky, task 'shaky': KeyError"):
        model.attention("1 2")
    module.BROKEN = "decode"
    with pytest.raises(PluginCodeError, match="^plugin seqkit_shaky, task 'shaky': RuntimeError: lookup") \
            as caught:
        model.evaluate("test")
    assert isinstance(caught.value, RuntimeError)  # code that caught RuntimeError still does


def test_a_plugin_raising_during_train_is_a_plugin_code_error(install_plugin, tmp_path):
    module = shaky(install_plugin)
    module.BROKEN = "fit"
    with pytest.raises(PluginCodeError, match="^plugin seqkit_shaky, task 'shaky': ValueError: no symbols") \
            as caught:
        seqkit.train(tiny("shaky"), out=tmp_path / "run", test=False, progress=False)
    assert isinstance(caught.value, ValueError)


def test_every_error_class_is_exported_from_seqkit_and_documented():
    """An application catches seqkit's errors by the names the README's table gives them."""
    import inspect
    from pathlib import Path

    import seqkit.errors

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    table = readme[readme.index("\n## Errors\n"):readme.index("\n## Plugins\n")]
    classes = [c for _, c in inspect.getmembers(seqkit.errors, inspect.isclass)
               if issubclass(c, seqkit.SeqkitError)]
    assert len(classes) >= 12
    for cls in classes:
        assert getattr(seqkit, cls.__name__) is cls and cls.__name__ in seqkit.__all__
        assert f"| `{cls.__name__}`" in table, f"{cls.__name__} is not in the README's error table"
    for name in ("Events", "RunInfo", "ConsoleProgress"):
        assert name in seqkit.__all__ and getattr(seqkit, name).__name__ == name
