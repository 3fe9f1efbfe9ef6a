"""Errors raised inside plugin code name the plugin; what would crash after training time is
spent (a cache that is not batch-first, a task state that is not JSON, config defaults of the wrong
type) is found when the model is built or the plugin loads."""

from __future__ import annotations

import datetime

import pytest
from click.testing import CliRunner

import seqkit
from seqkit.blame import describe
from seqkit.cli import cli
from seqkit.config import load_config
from seqkit.errors import ConfigError, PluginCodeError, PluginError, SeqkitError
from seqkit.plugins import make_plugin_manager

# decoder 'boom': a position-wise linear map whose misbehaviour is chosen by its `mode` option
BOOM = """
from dataclasses import dataclass

import torch
from seqkit import hookimpl
from seqkit.interfaces import Decoder

@dataclass
class BoomConfig:
    mode: str = "fine"

def _helper(message):
    raise RuntimeError(message)

class Boom(Decoder):
    def __init__(self, config, d_model):
        super().__init__()
        if config.mode == "factory-type":
            raise TypeError("cannot wire the layers")
        if config.mode == "factory-value":
            raise ValueError("width must be odd")
        self.d_model, self.mode = d_model, config.mode
        self.proj = torch.nn.Linear(d_model, d_model)

    def forward(self, y, enc, cache=None):
        if self.mode == "train" and torch.is_grad_enabled():
            _helper("boom in forward")
        if self.mode == "dry-run":
            raise IndexError("index 7 is out of bounds")
        hidden = self.proj(y)
        if cache is not None:
            if self.mode == "bad-step":
                cache = {"h": hidden.transpose(0, 1)}  # (T, B, D)
            else:
                cache = {k: v + y.size(1) if k == "steps" else v for k, v in cache.items()}
        return hidden, cache

    def init_cache(self, enc, batch_size, max_len):
        if self.mode == "layers-first":
            return {"steps": torch.zeros(batch_size), "h": torch.zeros(2, batch_size, self.d_model)}
        if self.mode == "scalar":
            return {"steps": torch.tensor(0)}
        return {"steps": torch.zeros(batch_size, dtype=torch.long)}

    def reorder_cache(self, cache, index):
        if self.mode == "bad-reorder":
            return cache  # ignores the index
        return super().reorder_cache(cache, index)

@hookimpl
def register_decoders(register):
    register("boom", Boom, BoomConfig)
"""


@pytest.fixture
def boom(install_plugin) -> str:
    return install_plugin(BOOM, dist="seqkit-boom", version="0.1", name="seqkit_boom")


def config_dict(mode: str = "fine", task: str = "reverse") -> dict:
    return {
        "seed": 1,
        "task": {"name": task, "symbols": 5, "min_len": 2, "max_len": 4, "train_size": 16,
                 "valid_size": 4, "test_size": 4},
        "model": {"d_model": 8, "encoder": {"name": "gru"}, "decoder": {"name": "boom", "mode": mode}},
        "data": {"batch_tokens": 64, "max_source_len": 6, "max_target_len": 6},
        "train": {"steps": 2, "lr": 1e-3, "warmup_steps": 1, "eval_every": 2, "log_every": 1},
    }


def write_config(tmp_path, data: dict) -> str:
    import tomli_w

    path = tmp_path / "run.toml"
    path.write_text(tomli_w.dumps(data))
    return str(path)


# -- naming the plugin from a traceback ------------------------------------------------------------


def test_describe_names_the_plugin_and_component_of_the_innermost_plugin_frame(boom, tmp_path):
    manager = make_plugin_manager()
    with pytest.raises(RuntimeError) as caught:
        seqkit.train(config_dict("train"), out=tmp_path / "run", test=False, manager=manager)
    assert describe(caught.value, manager) == \
        "plugin seqkit_boom, decoder 'boom': RuntimeError: boom in forward"


def test_describe_is_none_for_core_code_and_without_a_manager(boom):
    manager = make_plugin_manager()
    try:
        1 / 0  # noqa: B018 - raises
    except ZeroDivisionError as exc:
        assert describe(exc, manager) is None
        assert describe(exc, None) is None


def test_describe_looks_through_chained_exceptions(boom):
    manager = make_plugin_manager()
    reg = manager.get("decoder", "boom")
    try:
        try:
            reg.factory(reg.config_class(mode="factory-type"), 8)
        except TypeError as inner:
            raise RuntimeError("while building") from inner
    except RuntimeError as exc:
        assert describe(exc, manager) == "plugin seqkit_boom, decoder 'boom': RuntimeError: while building"


# -- the API raises seqkit's own errors for plugin code failing at build time ------------------------


def test_a_factory_raising_is_a_plugin_code_error_naming_plugin_kind_and_name(boom, tmp_path):
    with pytest.raises(PluginCodeError) as caught:
        seqkit.train(config_dict("factory-type"), out=tmp_path / "run", test=False)
    assert str(caught.value) == \
        "model.decoder: plugin seqkit_boom, decoder 'boom': TypeError: cannot wire the layers"
    assert isinstance(caught.value.__cause__, TypeError)


def test_a_factory_raising_value_error_is_a_config_error_naming_the_plugin(boom, tmp_path):
    with pytest.raises(ConfigError) as caught:
        seqkit.train(config_dict("factory-value"), out=tmp_path / "run", test=False)
    assert "model.decoder" in str(caught.value) and "seqkit_boom" in str(caught.value)
    assert "width must be odd" in str(caught.value)


def test_a_forward_raising_in_the_dry_run_is_a_plugin_code_error(boom):
    from seqkit.model import ModelShape, build_model

    manager = make_plugin_manager()
    config = load_config(config_dict("dry-run"), manager=manager).model
    with pytest.raises(PluginCodeError, match=r"plugin seqkit_boom, decoder 'boom': IndexError: index 7"):
        build_model(config, ModelShape("seq2seq", source_vocab=9, target_vocab=9), manager)


# -- the CLI: one line, exit status 2; --debug shows the traceback ---------------------------------


def test_seqkit_train_with_a_raising_decoder_is_one_line_naming_the_plugin(boom, tmp_path):
    config = write_config(tmp_path, config_dict("train"))
    result = CliRunner().invoke(cli, ["train", config, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("seqkit: error:")]
    assert lines == ["seqkit: error: plugin seqkit_boom, decoder 'boom': RuntimeError: boom in forward"
                     " (run with --debug for the traceback)"]
    assert "Traceback" not in result.output


def test_debug_shows_the_original_exception(boom, tmp_path):
    config = write_config(tmp_path, config_dict("train"))
    result = CliRunner().invoke(cli, ["--debug", "train", config, "--out", str(tmp_path / "run")])
    assert isinstance(result.exception, RuntimeError) and result.exit_code != 2


def test_an_exception_in_core_code_is_an_internal_error_line(monkeypatch, tmp_path):
    import seqkit.api

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(seqkit.api, "train", broken)
    config = write_config(tmp_path, config_dict())
    result = CliRunner().invoke(cli, ["train", config])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        "seqkit: error: internal error: ZeroDivisionError: division by zero "
        "(run with --debug for the traceback)")


@pytest.mark.parametrize("error", [MemoryError(), RuntimeError("DefaultCPUAllocator: can't allocate memory: "
                                                               "you tried to allocate 8000000000 bytes")])
def test_running_out_of_memory_is_said_as_such_not_as_a_bug(monkeypatch, tmp_path, error):
    import seqkit.api

    def hungry(*args, **kwargs):
        raise error

    monkeypatch.setattr(seqkit.api, "train", hungry)
    result = CliRunner().invoke(cli, ["train", write_config(tmp_path, config_dict())])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("seqkit: error: out of memory: ") and "internal" not in result.stderr


TASK_PLUGIN = """
from seqkit import hookimpl
from seqkit_tasks.synthetic import ReverseTask, SyntheticConfig

class Fragile(ReverseTask):
    name = "fragile"

    def fit(self, train):
        counts = {}
        return counts["<unk>"]

@hookimpl
def register_tasks(register):
    register("fragile", Fragile, SyntheticConfig)
"""


def test_a_task_method_raising_names_the_task(install_plugin, tmp_path):
    install_plugin(TASK_PLUGIN, dist="seqkit-fragile", version="1.0", name="seqkit_fragile")
    data = config_dict(task="fragile")
    data["model"]["decoder"] = {"name": "gru"}
    result = CliRunner().invoke(cli, ["train", write_config(tmp_path, data), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert "seqkit: error: plugin seqkit_fragile, task 'fragile': KeyError: '<unk>'" in result.output


BROKEN_TASK_FACTORY = """
from seqkit import hookimpl

def build(options):
    raise TypeError("unsupported operand")

@hookimpl
def register_tasks(register):
    register("brittle", build)
"""


def test_a_task_factory_raising_is_a_plugin_code_error_from_the_api(install_plugin, tmp_path):
    install_plugin(BROKEN_TASK_FACTORY, dist="seqkit-brittle", version="1.0", name="seqkit_brittle")
    data = config_dict(task="brittle")
    data["task"] = {"name": "brittle"}
    data["model"]["decoder"] = {"name": "gru"}
    with pytest.raises(PluginCodeError, match=r"plugin seqkit_brittle, task 'brittle': TypeError: unsup"):
        seqkit.train(data, out=tmp_path / "r", test=False)


COMMANDS = """
import click
from seqkit import hookimpl

@hookimpl
def register_commands(cli):
    @cli.command()
    def interrupt():
        raise KeyboardInterrupt

    @cli.command()
    @click.pass_context
    def leave(ctx):
        ctx.exit(3)

    @cli.command()
    def misuse():
        raise click.UsageError("needs a flag")

    @cli.command()
    def crash():
        raise OSError("disk on fire")
"""


def test_click_exits_and_aborts_pass_through_and_usage_errors_are_one_line(install_plugin):
    plugin = install_plugin(COMMANDS, dist="seqkit-commands", version="1.0")
    runner = CliRunner()
    interrupted = runner.invoke(cli, ["interrupt"])
    assert interrupted.exit_code == 1 and "Aborted!" in interrupted.output
    assert runner.invoke(cli, ["leave"]).exit_code == 3
    misuse = runner.invoke(cli, ["misuse"])
    assert misuse.exit_code == 2 and "Usage:" not in misuse.output
    assert misuse.stderr == "seqkit: error: needs a flag (see 'seqkit misuse --help')\n"
    crash = runner.invoke(cli, ["crash"])
    assert crash.exit_code == 2
    assert f"seqkit: error: plugin {plugin}, command 'crash': OSError: disk on fire" in crash.output


# -- a cache that is not batch-first is found when the model is built --------------------------------


@pytest.mark.parametrize(("mode", "detail"), [
    ("layers-first", r"\(2, 3, 8\)"),
    ("scalar", r"\(\)"),
    ("bad-step", r"\(1, 3, 8\)"),
    ("bad-reorder", r"\(3,\)"),
])
def test_a_cache_that_is_not_batch_first_is_an_error_at_build_time(boom, mode, detail):
    from seqkit.model import ModelShape, build_model

    manager = make_plugin_manager()
    config = load_config(config_dict(mode), manager=manager).model
    for kind, shape in (("seq2seq", ModelShape("seq2seq", source_vocab=9, target_vocab=9)),
                        ("language_model", ModelShape("language_model", target_vocab=9))):
        if kind == "language_model":
            config.encoder = None
        with pytest.raises(PluginError) as caught:
            build_model(config, shape, manager)
        message = str(caught.value)
        assert "\n" not in message
        assert "plugin seqkit_boom, decoder 'boom'" in message and "batch-first" in message
        assert __import__("re").search(detail, message), message


def test_a_batch_first_cache_builds(boom):
    from seqkit.model import ModelShape, build_model

    manager = make_plugin_manager()
    config = load_config(config_dict("fine"), manager=manager).model
    build_model(config, ModelShape("seq2seq", source_vocab=9, target_vocab=9), manager)


# -- a task state that is not JSON is found before the first checkpoint ------------------------------


class _State:
    """A task with a state chosen by the test (only the state methods matter here)."""

    def __init__(self, state, reads_back=True):
        self.state, self.reads_back = state, reads_back

    def state_dict(self):
        return self.state

    def load_state_dict(self, state):
        if not self.reads_back:
            state["vocabulary_size"]  # noqa: B018 - reads a key state_dict never wrote


def task_manager(task_class):
    from seqkit import hookimpl

    class Plugin:
        @hookimpl
        def register_tasks(self, register):
            register("weird", task_class)

    return make_plugin_manager(entry_points=False, plugins=[("seqkit_weird", Plugin())])


@pytest.mark.parametrize(("state", "key"), [
    ({"labels": {"a", "b"}}, "labels"),
    ({"meta": {"created": datetime.date(2024, 1, 1)}}, "meta.created"),
    ({"vocab": ["a", b"b"]}, "vocab[1]"),
    ({"ids": {(1, 2): "x"}}, "ids"),
])
def test_a_task_state_that_is_not_json_names_the_task_and_key(state, key):
    from seqkit.contracts import check_task_state

    class Weird(_State):
        pass

    task = Weird(state)
    manager = task_manager(Weird)
    with pytest.raises(PluginError) as caught:
        check_task_state(task, manager)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("plugin seqkit_weird, task 'weird': state_dict() is not JSON")
    assert f"key {key}" in message, message
    with pytest.raises(PluginError, match="task 'weird'"):
        check_task_state(task, manager.get("task", "weird"))


def test_a_task_state_that_does_not_read_back_is_an_error():
    from seqkit.contracts import check_task_state

    task = _State({"size": 3}, reads_back=False)
    with pytest.raises(PluginError, match=r"load_state_dict.*KeyError: 'vocabulary_size'"):
        check_task_state(task, task_manager(_State))


def test_a_json_task_state_passes():
    from seqkit.contracts import check_task_state

    check_task_state(_State({"vocab": ["a", "b"], "size": 2, "nested": {"x": [1.5, None, True]}}),
                     task_manager(_State))


# -- config defaults of the wrong type mark the plugin broken ----------------------------------------


WRONG_DEFAULT = """
from dataclasses import dataclass, field
from seqkit import hookimpl

@dataclass
class Options:
    width: int = 4
    {field}

@hookimpl
def register_encoders(register):
    register("wrong", lambda config, d_model: None, Options)
"""


@pytest.mark.parametrize(("field", "expected"), [
    ('layers: int = "two"', "layers: expected integer, got string 'two'"),
    ("scale: float = True", "scale: expected float"),
    ('names: list[str] = field(default_factory=lambda: ["a", 2])', "names[1]: expected str"),
    ("mode: str = None", None),  # None means "not set": left to the plugin
])
def test_config_defaults_of_the_wrong_type_mark_the_plugin_broken(install_plugin, field, expected,
                                                                   monkeypatch):
    name = install_plugin(WRONG_DEFAULT.replace("{field}", field), dist="seqkit-wrong", version="1.0")
    manager = make_plugin_manager(strict=False)
    info = manager.plugins[name]
    if expected is None:
        assert info.status == "ok"
        return
    assert info.status == "broken" and "\n" not in info.error
    assert "encoder 'wrong'" in info.error and expected in info.error, info.error
    assert "wrong" not in manager.names("encoder")
    with pytest.raises(PluginError, match=f"plugin {name}: encoder 'wrong'"):
        make_plugin_manager(strict=True)


def test_builtin_config_defaults_pass_the_strict_converter():
    manager = make_plugin_manager(strict=True)
    assert not manager.broken()


def test_plugin_code_error_is_a_seqkit_error():
    assert issubclass(PluginCodeError, SeqkitError) and issubclass(PluginCodeError, PluginError)
