"""An error about keys that do not fit together names every key involved and where each came from
(file:line, --set, or the default), and leads with the key the user typed on the command line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from seqkit.cli import cli
from seqkit.config import load_config
from seqkit.errors import ConfigError
from seqkit.plugins import make_plugin_manager
from seqkit.preflight import check_run_config

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "translate.toml"

GOOD = """
seed = 1
[task]
name = "reverse"
min_len = 2
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
# lines of GOOD's keys, as written to run.toml
D_MODEL_LINE, HEADS_LINE, MIN_LEN_LINE, MAX_LEN_LINE = 10, 16, 4, 5


def write(tmp_path, text: str = GOOD) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def error_line(path, *overrides: str) -> str:
    sets = [arg for override in overrides for arg in ("--set", override)]
    result = CliRunner().invoke(cli, ["config", "check", str(path), *sets])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    return lines[0].removeprefix("seqkit: error: ")


def test_the_readme_case_blames_the_set_key_and_says_where_the_other_came_from():
    assert error_line(EXAMPLE, "model.d_model=130") == (
        f"--set model.d_model=130: does not fit model.encoder.heads = 4 ({EXAMPLE}:22): "
        "4 does not divide d_model 130")


def test_both_keys_in_the_file_name_the_line_of_each(tmp_path):
    path = write(tmp_path, GOOD.replace("heads = 2", "heads = 3"))
    assert error_line(path) == (f"{path}:{HEADS_LINE}: model.decoder.heads: 3 does not divide "
                                f"d_model 32 (with model.d_model = 32 at line {D_MODEL_LINE})")


def test_a_default_is_named_as_the_default(tmp_path):
    path = write(tmp_path, GOOD.replace("heads = 2", "heads = 3").replace("d_model = 32\n", ""))
    assert error_line(path) == (f"{path}:{HEADS_LINE - 1}: model.decoder.heads: 3 does not divide "
                                "d_model 256 (with model.d_model = 256, the default)")


def test_the_set_key_leads_when_it_is_the_one_the_error_names(tmp_path):
    path = write(tmp_path)
    assert error_line(path, "model.decoder.heads=3") == (
        "--set model.decoder.heads: 3 does not divide d_model 32 "
        f"(with model.d_model = 32 at {path}:{D_MODEL_LINE})")
    assert error_line(path, "model.d_model=30", "model.decoder.heads=4") == (
        "--set model.decoder.heads: 4 does not divide d_model 30 (with model.d_model = 30 from --set)")


def test_options_of_one_component_that_do_not_fit_name_each_other(tmp_path):
    path = write(tmp_path)
    # the task's own check names max_len; the user changed min_len
    assert error_line(path, "task.min_len=8") == (
        f"--set task.min_len=8: does not fit task.max_len = 6 ({path}:{MAX_LEN_LINE}): "
        "must be at least min_len = 8, got 6")
    assert error_line(write(tmp_path, GOOD.replace("max_len = 6", "max_len = 1"))) == (
        f"{path}:{MAX_LEN_LINE}: task.max_len: must be at least min_len = 2, got 1 "
        f"(with task.min_len = 2 at line {MIN_LEN_LINE})")


def test_a_core_check_across_tables_names_both_keys(tmp_path):
    path = write(tmp_path, GOOD.replace("heads = 2", 'heads = 2\npositions = "learned"\n'
                                                      "max_positions = 8"))
    line = error_line(path, "data.max_target_len=20")
    assert line.startswith("--set data.max_target_len=20: does not fit model.decoder = \"transformer\" "
                           f"({path}:13): cannot take data.max_target_len = 20 positions"), line


def test_errors_about_one_key_are_unchanged(tmp_path):
    path = write(tmp_path)
    assert error_line(path, "model.decoder.heads=0") == (
        "--set model.decoder.heads: must be at least 1, got 0")
    assert error_line(write(tmp_path, GOOD.replace("layers = 1", "layers = 0"))) == (
        f"{path}:15: model.decoder.layers: must be at least 1, got 0")


def test_the_api_raises_the_same_line(tmp_path):
    manager = make_plugin_manager()
    config = load_config(write(tmp_path), ["model.d_model=31"], manager=manager)
    with pytest.raises(ConfigError) as info:
        check_run_config(config, manager)
    assert str(info.value) == (f"--set model.d_model=31: does not fit model.decoder.heads = 2 "
                               f"({tmp_path / 'run.toml'}:{HEADS_LINE}): 2 does not divide d_model 31")
