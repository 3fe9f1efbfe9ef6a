"""Strict TOML config: key paths, file:line, did-you-mean, types, overrides, plugin options."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqkit import ConfigError
from seqkit.cli import cli
from seqkit.config import RunConfig, config_to_toml, load_config, locate
from seqkit.plugins import make_plugin_manager

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@pytest.fixture
def manager(toy_encoder_plugin):
    """The toy encoder and nothing else that registers encoders, whatever else is installed."""
    others = [n for n, p in make_plugin_manager().plugins.items()
              if p.registered["encoder"] and n != toy_encoder_plugin]
    return make_plugin_manager(disable=others)


def write(tmp_path, text, name="run.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def error_of(*args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults_fill_an_empty_file(tmp_path, manager):
    config = load_config(write(tmp_path, ""), manager=manager)
    assert config == RunConfig()
    assert config.train.lr == 1e-3 and config.model.encoder is None


def test_plugin_component_options_are_validated_against_its_dataclass(tmp_path, manager):
    path = write(tmp_path, """
        [model]
        d_model = 64
        [model.encoder]
        name = "toy"
        layers = 3
    """)
    config = load_config(path, manager=manager)
    assert config.model.encoder.name == "toy"
    assert config.model.encoder.options.layers == 3
    assert config.model.encoder.options.kind == "plain"


def test_unknown_key_names_full_path_line_and_suggestion(tmp_path, manager):
    path = write(tmp_path, """
        seed = 1

        [model.encoder]
        name = "toy"
        layerz = 3
    """)
    assert error_of(path, manager=manager) == (
        f"{path}:5: model.encoder.layerz: unknown key; did you mean 'layers'?")


def test_unknown_top_level_and_core_keys(tmp_path, manager):
    assert "seeed: unknown key; did you mean 'seed'?" in error_of(
        write(tmp_path, "seeed = 1\n"), manager=manager)
    message = error_of(write(tmp_path, "[train]\nsteps = 2\nbogus = 1\n"), manager=manager)
    assert message.endswith("run.toml:3: train.bogus: unknown key; valid keys: accumulate, "
                            "best_metric, betas, clip_norm, compile, eval_every, eval_examples, "
                            "keep_last, label_smoothing, log_every, lr, min_lr, patience, schedule, "
                            "steps, warmup_steps, weight_decay")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("seed = 'x'", "seed: expected integer, got string 'x'"),
        ("seed = true", "seed: expected integer, got boolean True"),
        ("[train]\nlr = 'fast'", "train.lr: expected float, got string 'fast'"),
        ("[train]\ncompile = 1", "train.compile: expected boolean, got integer 1"),
        ("train = 3", "train: expected table, got integer 3"),
        ("[train]\nschedule = 'cosin'",
         "train.schedule: expected one of 'inverse_sqrt', 'cosine', 'constant', got 'cosin'; "
         "did you mean 'cosine'?"),
        ("[model.encoder]\nname = 'toy'\nlayers = 2.5", "model.encoder.layers: expected integer, "
         "got float 2.5"),
        ("[model]\nd_model = -1", "model.d_model: must be positive, got -1"),
        ("[train]\nlabel_smoothing = 1.5", "train.label_smoothing: must be in [0, 1), got 1.5"),
    ],
)
def test_wrong_types_and_values_name_key_expected_and_given(tmp_path, manager, text, expected):
    assert expected in error_of(write(tmp_path, text), manager=manager)


def test_unknown_component_lists_available_names(tmp_path, manager):
    message = error_of(write(tmp_path, "[model.encoder]\nname = 'tay'\n"), manager=manager)
    assert message.endswith("run.toml:2: model.encoder.name: unknown encoder 'tay'; "
                            "available: toy; did you mean 'toy'?")
    message = error_of(write(tmp_path, "[model.encoder]\nlayers = 2\n"), manager=manager)
    assert "model.encoder.name: missing encoder name; available: toy" in message


def test_invalid_toml_names_file_and_line(tmp_path, manager):
    message = error_of(write(tmp_path, "seed = 1\n[train\n"), manager=manager)
    assert message.startswith(f"{tmp_path / 'run.toml'}:2: invalid TOML")


def test_missing_file_is_a_config_error(tmp_path, manager):
    assert "no such config file" in error_of(tmp_path / "absent.toml", manager=manager)


def test_overrides_parse_values_as_toml_and_bare_words_as_strings(tmp_path, manager):
    path = write(tmp_path, "[model.encoder]\nname = 'toy'\n")
    config = load_config(path, ["train.lr=0.5", "model.encoder.kind=fancy",
                                "model.encoder.layers=7", "seed=42", "train.compile=true"],
                         manager=manager)
    assert config.train.lr == 0.5 and config.seed == 42 and config.train.compile is True
    assert config.model.encoder.options.kind == "fancy"
    assert config.model.encoder.options.layers == 7


def test_override_errors_say_they_come_from_set(tmp_path, manager):
    path = write(tmp_path, "")
    assert error_of(path, ["train.lrr=1"], manager=manager) == (
        "--set train.lrr: unknown key; did you mean 'lr'?")
    assert "expected KEY.PATH=VALUE" in error_of(path, ["train.lr"], manager=manager)
    assert "seed is not a table" in error_of(path, ["seed=1", "seed.x=2"], manager=manager)


OTHER_ENCODER_PLUGIN = """
    from dataclasses import dataclass
    from seqkit import ConfigError, hookimpl

    @dataclass
    class Other:
        width: int = 1
        layers: int = 1

        def __post_init__(self):
            if self.layers > 5:
                raise ConfigError(f"at most 5, got {self.layers}", key="layers")

    @hookimpl
    def register_encoders(register):
        register("other", lambda config, d_model: None, Other)
"""


@pytest.fixture
def two_encoders(install_plugin, toy_encoder_plugin):
    """Encoders 'toy' (layers, kind) and 'other' (width, layers)."""
    install_plugin(OTHER_ENCODER_PLUGIN)
    return make_plugin_manager()


def test_a_changed_component_name_drops_the_file_options_of_the_old_one(tmp_path, two_encoders,
                                                                         caplog):
    path = write(tmp_path, "[model.encoder]\nname = 'other'\nwidth = 4\nlayers = 3\n")
    assert load_config(path, manager=two_encoders).model.encoder.options.width == 4
    with caplog.at_level("WARNING", logger="seqkit.config"):
        config = load_config(path, ["model.encoder.name=toy"], manager=two_encoders)
    assert config.model.encoder.name == "toy"
    assert config.model.encoder.options.layers == 3  # an option 'toy' takes too stays
    assert [r.getMessage() for r in caplog.records] == [
        "model.encoder.name=toy: dropped model.encoder.width (options of other)"]


def test_options_kept_across_a_name_change_are_still_validated(tmp_path, two_encoders):
    path = write(tmp_path, "[model.encoder]\nname = 'toy'\nkind = 'x'\nlayers = 9\n")
    assert error_of(path, ["model.encoder.name=other"], manager=two_encoders) == (
        f"{path}:4: model.encoder.layers: at most 5, got 9")


def test_options_typed_beside_the_new_name_are_not_dropped(tmp_path, two_encoders):
    path = write(tmp_path, "[model.encoder]\nname = 'other'\nwidth = 4\n")
    for overrides in (["model.encoder.name=toy", "model.encoder.width=2"],
                      ["model.encoder.width=2", "model.encoder.name=toy"]):
        assert error_of(path, overrides, manager=two_encoders) == (
            "--set model.encoder.width: unknown key; valid keys: kind, layers")
    # the whole table given at once is all the user's
    assert error_of(path, ["model.encoder={name = 'toy', width = 2}"], manager=two_encoders) == (
        "--set model.encoder.width: unknown key; valid keys: kind, layers")
    # the same name again changes nothing: its options stay and are checked
    assert load_config(path, ["model.encoder.name=other"], manager=two_encoders
                       ).model.encoder.options.width == 4


def test_a_name_change_in_a_dict_config_drops_the_old_options_too(two_encoders, caplog):
    data = {"model": {"encoder": {"name": "other", "width": 4, "layers": 2}}}
    with caplog.at_level("WARNING", logger="seqkit.config"):
        config = load_config(data, ["model.encoder.name=toy"], manager=two_encoders)
    assert config.model.encoder.options.layers == 2
    assert "dropped model.encoder.width (options of other)" in caplog.text
    assert data["model"]["encoder"]["width"] == 4  # the caller's dict is left alone


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "translate.toml"


@pytest.mark.parametrize("part", ["encoder", "decoder"])
def test_the_readme_set_example_works_on_the_shipped_config(part, caplog):
    with caplog.at_level("WARNING", logger="seqkit.config"):
        config = load_config(EXAMPLE, [f"model.{part}.name=lstm"])
    component = getattr(config.model, part)
    assert component.name == "lstm"
    assert component.options.layers == 2 and component.options.dropout == 0.1  # kept from the file
    assert [r.getMessage() for r in caplog.records] == [
        f"model.{part}.name=lstm: dropped model.{part}.heads, ffn_size (options of transformer)"]
    message = error_of(EXAMPLE, [f"model.{part}.name=lstm", f"model.{part}.heads=2"])
    assert message.startswith(f"--set model.{part}.heads: unknown key; valid keys: ")


def test_a_changed_task_name_drops_the_options_of_the_old_task(caplog):
    with caplog.at_level("WARNING", logger="seqkit.config"):
        config = load_config(EXAMPLE, ["task.name=reverse", "task.max_len=5"])
    assert config.task.name == "reverse" and config.task.options.max_len == 5
    assert [r.getMessage() for r in caplog.records] == [
        "task.name=reverse: dropped task.train, valid, test, format, tokenizer, vocab_size "
        "(options of translation)"]


def test_the_readme_set_example_passes_config_check(caplog):
    with caplog.at_level("WARNING", logger="seqkit.config"):
        result = CliRunner().invoke(cli, ["config", "check", str(EXAMPLE), "--set",
                                          "model.encoder.name=lstm"])
    assert result.exit_code == 0, result.output
    assert "dropped model.encoder.heads, ffn_size (options of transformer)" in caplog.text


def test_show_round_trips(tmp_path, manager):
    path = write(tmp_path, """
        seed = 5
        [model.encoder]
        name = "toy"
        layers = 4
        [train]
        lr = 0.01
    """)
    config = load_config(path, manager=manager)
    text = config_to_toml(config)
    assert 'name = "toy"' in text and "layers = 4" in text and "batch_tokens = 4096" in text
    assert "betas = [" in text
    assert load_config(tomllib.loads(text), manager=manager) == config


def _fields_of(value, prefix=()):
    """(table path, key) of every option of a resolved config, None-valued ones included."""
    import dataclasses

    from seqkit.config import Component

    if isinstance(value, Component):
        yield prefix, "name"
        value = value.options
        if value is None:
            return
    for f in dataclasses.fields(value):
        item = getattr(value, f.name)
        if dataclasses.is_dataclass(item):
            yield from _fields_of(item, (*prefix, f.name))
        elif f.name in ("task", "encoder", "decoder") and item is None:
            continue  # no component chosen: nothing to show
        else:
            yield prefix, f.name


def test_show_names_every_option_and_loads_back_to_the_same_config(tmp_path):
    config = load_config(EXAMPLE, ["model.encoder={name = 'transformer', layers = 1, heads = 2}",
                                   "model.decoder.name=lstm"])
    assert config.model.encoder.options.ffn_size is None
    text = config_to_toml(config, unset=True)
    tables, table = {}, ()
    for line in text.splitlines():
        if line.startswith("["):
            table = tuple(line.strip("[]").split("."))
        elif line:
            key = line.removeprefix("# ").partition(" ")[0].rstrip(":")
            tables.setdefault(table, []).append(key)
    shown = {(t, k) for t, keys in tables.items() for k in keys}
    assert set(_fields_of(config)) == shown  # every option, and each once
    assert sum(len(keys) for keys in tables.values()) == len(shown)
    assert "\n# ffn_size: not set (integer; None means 4 * d_model)\n" in text
    assert "\n# source_lang: not set (string; parallel: suffix of the source files" in text
    assert "\n# hidden_size: not set (integer; " in text  # the lstm decoder's
    assert "betas = [0.9, 0.98]\n" in text
    path = tmp_path / "shown.toml"
    path.write_text(text)
    result = CliRunner().invoke(cli, ["config", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert load_config(path) == config
    assert load_config(tomllib.loads(text)) == config


def test_show_without_unset_options_has_no_comment_lines():
    config = load_config(EXAMPLE, ["model.encoder={name = 'transformer'}"])
    text = config_to_toml(config)
    assert "#" not in text and "ffn_size" not in text.split("[model.decoder]")[0]
    assert load_config(tomllib.loads(text)) == config


def test_locate_finds_keys_in_tables_dotted_keys_and_quoted_keys():
    text = '[model]\nd_model = 1\nencoder.name = "x"\n\n[train]\n"lr" = 2\n'
    assert locate(text, ("model", "d_model")) == 2
    assert locate(text, ("model", "encoder", "name")) == 3
    assert locate(text, ("train", "lr")) == 6
    assert locate(text, ("train", "missing")) == 5
    assert locate(text, ("nothing",)) is None


# -- fuzz: any TOML document is a valid config or a ConfigError, never anything else -------------

KEYS = ["seed", "backend", "precision", "task", "model", "train", "encoder", "decoder", "name",
        "toy", "layers", "kind", "d_model", "pool", "lr", "steps", "schedule", "x", ""]
scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1), st.floats(allow_nan=True),
    st.booleans(), st.text(max_size=8), st.sampled_from(["toy", "mean", "cosine", "auto", "fp32"]),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.sampled_from(KEYS), children, max_size=4),
    ),
    max_leaves=12,
)
documents = st.dictionaries(st.sampled_from(KEYS), values, max_size=5)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=documents)
def test_fuzz_documents_give_a_config_or_a_config_error(manager, document):
    try:
        config = load_config(document, manager=manager)
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert isinstance(config, RunConfig)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=60), key=st.sampled_from(["seed", "train.lr", "model.encoder.name",
                                                        "model.encoder.layers", "a.b"]))
def test_fuzz_override_values_and_raw_text(tmp_path, manager, text, key):
    path = tmp_path / "fuzz.toml"
    path.write_text(text, encoding="utf-8")
    for args in ((path,), (tmp_path / "empty.toml", [f"{key}={text}"])):
        (tmp_path / "empty.toml").write_text("")
        try:
            load_config(*args, manager=manager)
        except ConfigError:
            pass
