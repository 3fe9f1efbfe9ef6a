"""The Task contract, checked where a wrong guess used to give an opaque error or a wrong result:
the model shape (a classifier's class count is num_outputs), model_kind and ModelShape.kind
agreeing, metric directions (best_metric picks by the task's declared direction, never a guess),
and what an author imports from seqkit."""

from __future__ import annotations

import subprocess
import sys

import pytest

from seqkit import ConfigError, PluginError
from seqkit.config import Component, ModelConfig
from seqkit.evaluate import is_better, metric_direction
from seqkit.model import ModelShape, build_model, task_model_shape
from seqkit.plugins import make_plugin_manager
from seqkit.preflight import check_run_config

MANAGER = make_plugin_manager()
AUTHOR_NAMES = ("ModelShape", "EncodedExample", "Batch", "Example", "Task", "Backend", "Encoder",
                "Decoder", "EncoderOutput", "Direction")


def test_everything_an_author_needs_is_exported_lazily():
    import seqkit

    for name in AUTHOR_NAMES:
        assert name in seqkit.__all__ and getattr(seqkit, name) is not None
    code = "import sys, seqkit; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr


def classifier(shape: ModelShape):
    config = ModelConfig(encoder=Component("gru", MANAGER.get("encoder", "gru").config_class()), d_model=8)
    return build_model(config, shape, MANAGER)


def test_classes_put_in_target_vocab_are_one_line_naming_num_outputs():
    with pytest.raises(PluginError) as info:
        classifier(ModelShape("classifier", source_vocab=20, target_vocab=3))
    message = str(info.value)
    assert "\n" not in message
    assert "a classifier needs num_outputs = the number of classes (at least 2), got None" in message
    assert "put the class count in num_outputs" in message


class FakeTask:
    model_kind = "seq2seq"

    def __init__(self, shape, directions=None):
        self.shape, self.directions = shape, directions or {}

    def model_shape(self):
        return self.shape

    def metric_directions(self):
        return self.directions


@pytest.mark.parametrize("shape, expected", [
    (ModelShape("classifier", source_vocab=9, num_outputs=2),
     "plugin p, task 'x': model_shape().kind is 'classifier' but the task's model_kind is 'seq2seq'"),
    (ModelShape("seq2seq", source_vocab=9),
     "plugin p, task 'x': model_shape(): a seq2seq needs target_vocab (the target vocabulary size)"),
    ({"kind": "seq2seq"}, "plugin p, task 'x': model_shape() returned a dict, not a seqkit.ModelShape"),
])
def test_task_model_shape_names_the_plugin_and_field(shape, expected):
    with pytest.raises(PluginError, match="^" + expected.replace("(", r"\(").replace(")", r"\)")):
        task_model_shape(FakeTask(shape), "plugin p, task 'x'")


def test_a_task_declared_lower_metric_improves_downwards():
    task = FakeTask(None, {"error_rate": "lower", "bleu": "higher"})
    assert is_better("error_rate", 0.1, 0.2, task) and not is_better("error_rate", 0.3, 0.2, task)
    assert is_better("bleu", 30.0, 20.0, task)
    assert is_better("train_error_rate", 0.1, 0.2, task)  # no valid split: train_<name>
    assert metric_direction("loss", task) == "lower" and metric_direction("ppl", task) == "lower"


def test_a_metric_without_a_direction_is_never_guessed():
    with pytest.raises(ConfigError, match="'wer' has no declared direction"):
        metric_direction("wer", FakeTask(None, {"error_rate": "lower"}))


@pytest.mark.parametrize("directions, expected", [
    ({"loss": "higher"}, "seqkit's own 'loss' is 'lower'"),
    ({"error_rate": "down"}, "must be 'higher' or 'lower', got 'down'"),
])
def test_a_bad_declaration_is_the_tasks_error(directions, expected):
    with pytest.raises(PluginError, match=expected):
        metric_direction("error_rate", FakeTask(None, directions))


UNDIRECTED_TASK = """
from seqkit import hookimpl
from seqkit_tasks.synthetic import ReverseTask, SyntheticConfig


class Scored(ReverseTask):
    def metrics(self, predictions, references):
        return {**super().metrics(predictions, references), "error_rate": 0.0}

    def metric_directions(self):
        return {"exact_match": "higher"}  # error_rate left out


@hookimpl
def register_tasks(register):
    register("scored", Scored, SyntheticConfig)
"""


def test_best_metric_without_a_direction_is_a_config_error_before_training(install_plugin):
    from seqkit.config import load_config

    install_plugin(UNDIRECTED_TASK)
    manager = make_plugin_manager()
    config = load_config({"task": {"name": "scored", "train_size": 10},
                          "model": {"d_model": 8, "encoder": {"name": "gru"}, "decoder": {"name": "gru"}},
                          "train": {"best_metric": "error_rate"}}, manager=manager)
    with pytest.raises(ConfigError) as info:
        check_run_config(config, manager)
    assert str(info.value) == ("train.best_metric: 'error_rate' is not a metric of task 'scored'; "
                               "available: loss, ppl, token_accuracy, exact_match")


def test_a_metric_named_but_without_a_direction_is_a_config_error(install_plugin):
    """A task of the older contract lists metric_names only: best_metric on one is refused."""
    from seqkit.config import load_config

    legacy = "class Scored(ReverseTask):\n    metric_names = ('error_rate',)\n"
    install_plugin(UNDIRECTED_TASK.replace("class Scored(ReverseTask):", legacy))
    manager = make_plugin_manager()
    config = load_config({"task": {"name": "scored", "train_size": 10},
                          "model": {"d_model": 8, "encoder": {"name": "gru"}, "decoder": {"name": "gru"}},
                          "train": {"best_metric": "error_rate"}}, manager=manager)
    with pytest.raises(ConfigError) as info:
        check_run_config(config, manager)
    assert str(info.value) == ("train.best_metric: 'error_rate': task 'scored' does not declare whether "
                               "higher or lower is better (its metric_directions() lacks it)")


@pytest.mark.parametrize("declared", ["None", "3", "['error_rate']"])
def test_a_declaration_that_is_not_a_dict_is_the_tasks_error_in_the_config_check(install_plugin,
                                                                                 declared):
    """check_run_config reads the declared names through the same check as the trainer: a task
    returning something other than a dict gets a PluginError naming it, not a TypeError."""
    from seqkit.config import load_config

    install_plugin(UNDIRECTED_TASK.replace('{"exact_match": "higher"}', declared))
    manager = make_plugin_manager()
    config = load_config({"task": {"name": "scored", "train_size": 10},
                          "model": {"d_model": 8, "encoder": {"name": "gru"}, "decoder": {"name": "gru"}},
                          "train": {"best_metric": "error_rate"}}, manager=manager)
    with pytest.raises(PluginError, match="metric_directions\\(\\) must return a dict"):
        check_run_config(config, manager)


SHAPELESS_TASK = """
from seqkit import ModelShape, hookimpl
from seqkit_tasks.synthetic import ReverseTask, SyntheticConfig


class Shapeless(ReverseTask):
    def model_shape(self):
        return ModelShape("seq2seq", source_vocab=12)  # target_vocab forgotten


@hookimpl
def register_tasks(register):
    register("shapeless", Shapeless, SyntheticConfig)
"""


def test_a_wrong_shape_is_refused_before_training_naming_the_plugin(install_plugin):
    from seqkit.config import load_config

    plugin = install_plugin(SHAPELESS_TASK)
    manager = make_plugin_manager()
    config = load_config({"task": {"name": "shapeless", "train_size": 10},
                          "model": {"d_model": 8, "encoder": {"name": "gru"}, "decoder": {"name": "gru"}}},
                         manager=manager)
    with pytest.raises(PluginError) as info:
        check_run_config(config, manager)
    assert str(info.value) == (f"plugin {plugin}, task 'shapeless': model_shape(): a seq2seq needs "
                               "target_vocab (the target vocabulary size), got None")


def test_loading_with_a_task_whose_shape_went_wrong_names_the_plugin_not_the_file(
        install_plugin, tmp_path, monkeypatch):
    import importlib

    import seqkit

    plugin = install_plugin(SHAPELESS_TASK.replace("def model_shape(self):", "def broken_shape(self):"))
    manager = make_plugin_manager()
    seqkit.train({"task": {"name": "shapeless", "train_size": 16, "valid_size": 0, "test_size": 0},
                  "model": {"d_model": 8, "encoder": {"name": "gru"}, "decoder": {"name": "gru"}},
                  "train": {"steps": 1, "eval_every": 1}}, out=tmp_path / "run", manager=manager, test=False)
    shapeless = importlib.import_module(manager.plugins[plugin].module).Shapeless
    monkeypatch.setattr(shapeless, "model_shape", shapeless.broken_shape)
    with pytest.raises(PluginError) as info:
        seqkit.load(tmp_path / "run", manager=manager)
    assert str(info.value).startswith(f"plugin {plugin}, task 'shapeless': model_shape(): a seq2seq needs")
