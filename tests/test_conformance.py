"""The conformance suite over every registered encoder, decoder and encoder x decoder pair."""

from __future__ import annotations

import pytest

from seqkit.plugins import make_plugin_manager
from seqkit.testing import conformance_checks, run_check

CHECKS = list(conformance_checks(make_plugin_manager()))


def test_every_builtin_architecture_is_checked():
    subjects = {check.subject for check in CHECKS}
    for name in ("rnn", "lstm", "gru", "transformer"):
        assert f"encoder {name}" in subjects and f"decoder {name}" in subjects
    assert "encoder lstm + decoder transformer" in subjects


def test_every_builtin_task_and_backend_is_checked():
    subjects = {check.subject for check in CHECKS}
    for name in ("translation", "language_model", "classification", "regression", "copy"):
        assert f"task {name}" in subjects
    for name in ("cpu", "cuda", "mps"):
        assert f"backend {name}" in subjects


# What may be unsupported: language modelling for a decoder, --data for a task without files, a
# backend whose device this machine lacks, source state shared by beams (a decoder that keeps none
# apart); what may warn: parameters a language model leaves unused.
OPTIONAL = ("language model", "--data does not apply", "not available on this machine",
            "keeps no source state apart")


@pytest.mark.parametrize("check", CHECKS, ids=[f"{c.subject}: {c.name}" for c in CHECKS])
def test_conformance(check):
    outcome = run_check(check)
    assert outcome.status != "failed", outcome.detail
    if outcome.status == "unsupported":
        assert any(text in check.subject or text in outcome.detail for text in OPTIONAL), outcome.detail
    if outcome.status == "warning":
        assert "(language model)" in check.subject and "no gradient" in outcome.detail, outcome.detail


# -- the suite catches broken components --------------------------------------------------------

BROKEN = """
import torch
from seqkit import hookimpl
from seqkit.interfaces import Decoder, Encoder, EncoderOutput


class LeakyEncoder(Encoder):
    '''Mixes every position, padding included, into every output: breaks padding invariance.'''

    def __init__(self, d_model):
        super().__init__()
        self.d_model = d_model
        self.proj = torch.nn.Linear(d_model, d_model)

    def forward(self, x, mask):
        return EncoderOutput(self.proj(x) + x.mean(1, keepdim=True), mask)


class PeekingDecoder(Decoder):
    '''Each output sees the whole target: not causal; its cache forgets the past.'''

    def __init__(self, d_model):
        super().__init__()
        self.d_model = d_model
        self.proj = torch.nn.Linear(d_model, d_model)

    def forward(self, y, enc, cache=None):
        return self.proj(y) + y.mean(1, keepdim=True), cache

    def init_cache(self, enc, batch_size, max_len):
        return {}


@hookimpl
def register_encoders(register):
    register("leaky", lambda config, d_model: LeakyEncoder(d_model))


@hookimpl
def register_decoders(register):
    register("peeking", lambda config, d_model: PeekingDecoder(d_model))
"""


def others(keep: str) -> list[str]:
    """Every installed plugin but ``keep``: pairing with them would only cost time."""
    return [name for name in make_plugin_manager().plugins if name != keep]


@pytest.fixture
def broken_plugin(install_plugin):
    return install_plugin(BROKEN, dist="seqkit-broken", version="0.0.1", name="broken")


def test_the_suite_fails_a_leaky_encoder_and_a_peeking_decoder(broken_plugin):
    manager = make_plugin_manager(disable=others(broken_plugin))
    outcomes = {(c.subject, c.name): run_check(c) for c in conformance_checks(manager, "broken")
                if c.name != "overfit"}  # the peeking decoder ignores the source: slow to fail
    failed = {key for key, outcome in outcomes.items() if outcome.status == "failed"}
    assert ("encoder leaky", "encoder_padding_invariance") in failed
    assert ("decoder peeking (language model)", "decoder_causality") in failed
    assert ("decoder peeking (language model)", "decoder_incremental") in failed
    assert ("encoder leaky", "encoder_shapes") not in failed
    detail = outcomes[("encoder leaky", "encoder_padding_invariance")].detail
    assert "memory of real positions changed with extra padding" in detail


def test_plugins_check_cli_exit_status(broken_plugin):
    from click.testing import CliRunner

    from seqkit.cli import cli

    disable = [arg for name in others(broken_plugin) for arg in ("--disable-plugin", name)]
    result = CliRunner().invoke(cli, [*disable, "plugins", "check", "broken"])
    assert result.exit_code == 1
    assert "FAILED      encoder leaky: encoder_padding_invariance" in result.stdout
    assert result.stdout.strip().splitlines()[-1].endswith("unsupported")
    missing = CliRunner().invoke(cli, ["plugins", "check", "nope"])
    assert missing.exit_code == 2 and "no plugin named 'nope'" in missing.stderr


# -- isolation: a broken other plugin does not fail NAME's check ---------------------------------


def test_plugins_check_name_skips_pairs_with_a_broken_other_plugin(broken_plugin):
    from click.testing import CliRunner

    from seqkit.cli import cli

    keep = {"seqkit_example", broken_plugin, "seqkit_backends"}
    disable = [arg for name in make_plugin_manager().plugins if name not in keep
               for arg in ("--disable-plugin", name)]
    result = CliRunner().invoke(cli, [*disable, "plugins", "check", "seqkit_example"])
    assert result.exit_code == 0, result.stdout
    assert "FAILED" not in result.stdout
    assert f"skipped 1 pair with {broken_plugin}:leaky (its own checks fail: encoder_padding_invariance)" \
        in result.stdout
    assert f"skipped 1 pair with {broken_plugin}:peeking (its own checks fail: " in result.stdout


# -- tasks --------------------------------------------------------------------------------------

TASKS = """
import json, random
from dataclasses import dataclass
from pathlib import Path
import torch
from seqkit import hookimpl, Task, Example, EncodedBatch, EncodedExample, ModelShape, TokenArrays


@dataclass
class Options:
    train: Path | None = None
    test: Path | None = None


class Letters(Task):
    '''Texts of letters a-z, the target is the text itself (seq2seq).'''

    model_kind = "seq2seq"
    mode = "fine"

    def __init__(self, options):
        self.options = options
        self.fitted = None

    def splits(self):
        return ["train", "test"]

    def examples(self, split):
        if self.mode == "global_random":
            words = ["".join(random.choice("abc") for _ in range(4)) for _ in range(5)]
        else:
            path = getattr(self.options, split)
            words = path.read_text().split() if path else ["abc", "hello", "xyz"]
        return (Example(w, w, f"{split}:{i}") for i, w in enumerate(words))

    def fit(self, train):
        self.fitted = True

    def state_dict(self):
        return {"fitted": self.fitted} if self.mode != "not_json" else {"fitted": {1, 2}}

    def load_state_dict(self, state):
        self.fitted = state["fitted"]

    def model_shape(self):
        if self.mode == "classes_in_target_vocab":
            return ModelShape("classifier", source_vocab=30, target_vocab=5)
        return ModelShape("seq2seq", source_vocab=30, target_vocab=30)

    def encode(self, example):
        ids = torch.tensor([4 + ord(c) - 97 for c in example.source])
        cut = ids[:-1] if self.mode == "lossy" else ids
        target = None if example.target is None else torch.cat([torch.tensor([1]), cut, torch.tensor([2])])
        return EncodedExample(ids, target)

    def encode_batch(self, examples):
        rows = [self.encode(e) for e in examples]
        cut = -1 if self.mode == "batch_differs" else None
        return EncodedBatch(TokenArrays.from_lists([r.source.tolist() for r in rows]),
                            TokenArrays.from_lists([r.target.tolist()[:cut] for r in rows]))

    def decode(self, output):
        return "".join(chr(97 + int(i) - 4) for i in output)

    def metrics(self, predictions, references):
        return {"error_rate": sum(p != r for p, r in zip(predictions, references)) / len(references)}

    def metric_directions(self):
        return {} if self.mode == "no_direction" else {"error_rate": "lower"}

    @classmethod
    def sample_options(cls, folder):
        (folder / "train.txt").write_text("abc hello xyz")
        return {"train": folder / "train.txt"}


def make(mode):
    return type(f"Letters_{mode}", (Letters,), {"mode": mode})


@hookimpl
def register_tasks(register):
    for mode in ("fine", "lossy", "not_json", "no_direction", "global_random", "classes_in_target_vocab",
                 "batch_differs"):
        register(mode, make(mode), Options)
"""


@pytest.fixture(scope="module")
def task_outcomes(tmp_path_factory):
    import importlib.util

    from seqkit.testing_suite import check_plugin

    path = tmp_path_factory.mktemp("tasks") / "letter_tasks.py"
    path.write_text(TASKS)
    spec = importlib.util.spec_from_file_location("letter_tasks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    manager = make_plugin_manager(entry_points=False, plugins=[("letters", module)])
    return {(o.check.subject.removeprefix("task "), o.check.name): o
            for o in check_plugin(manager, "letters").outcomes}


def test_a_conforming_task_passes_every_check(task_outcomes):
    mine = {name: o for (task, name), o in task_outcomes.items() if task == "fine"}
    assert len(mine) == 7 and all(o.status == "passed" for o in mine.values()), mine


@pytest.mark.parametrize("task, check, detail", [
    ("lossy", "task_round_trip",
     "task lossy: decode(encode(x)).target != x.target for example 0 (train:0): 'abc' vs 'ab'"),
    ("not_json", "task_state_round_trip", "task not_json: state_dict() is not JSON: key fitted holds a set"),
    ("no_direction", "task_metrics", "task no_direction: metric 'error_rate' has no direction"),
    ("batch_differs", "task_encode_batch", "task batch_differs: encode_batch() and encode() differ on the "
                                           "target of example 0 (train:0): [1, 4, 5, 6] vs [1, 4, 5, 6, 2]"),
    ("global_random", "task_deterministic", "draw data from the task's own seed option"),
    ("classes_in_target_vocab", "task_model_shape",
     "task classes_in_target_vocab: model_shape().kind is 'classifier' but the task's model_kind is "
     "'seq2seq'"),
])
def test_task_checks_say_what_is_wrong_in_the_authors_terms(task_outcomes, task, check, detail):
    outcome = task_outcomes[(task, check)]
    assert outcome.status == "failed" and detail in outcome.detail, outcome.detail
    assert "\n" not in outcome.detail and "Traceback" not in outcome.detail


def test_the_data_option_check_reads_the_file_as_test(task_outcomes):
    assert task_outcomes[("fine", "task_data_option")].status == "passed"


# -- backends -----------------------------------------------------------------------------------

BACKENDS = """
import contextlib
import torch
from seqkit import hookimpl, Backend


class Base(Backend):
    def is_available(self):
        return True

    def device(self, index=None):
        return torch.device("cpu")

    def device_name(self):
        return "test cpu"

    def default_precision(self):
        return "fp32"

    def supported_precisions(self):
        return ("fp32",)

    def autocast(self, precision):
        if precision != "fp32":
            raise ValueError(f"only fp32, not {precision}")
        return contextlib.nullcontext()

    def synchronize(self):
        pass

    def memory_stats(self):
        return {"allocated": 0, "peak": 0}

    def peak_flops(self, precision):
        return None


class Good(Base):
    name = "good"


class WrongDefault(Base):
    name = "wrong_default"

    def default_precision(self):
        return "bf16"


class FloatMemory(Base):
    name = "float_memory"

    def memory_stats(self):
        return {"allocated": 1.5, "peak": 2}


class CrashingAutocast(Base):
    name = "crashing_autocast"

    def autocast(self, precision):
        return {"fp32": contextlib.nullcontext()}[precision]  # KeyError: not a clear refusal


class Misnamed(Base):
    name = "other"


@hookimpl
def register_backends(register):
    register("good", Good)
    register("wrong_default", WrongDefault)
    register("float_memory", FloatMemory)
    register("crashing_autocast", CrashingAutocast)
    register("misnamed", Misnamed)
"""


@pytest.fixture(scope="module")
def backend_outcomes(tmp_path_factory):
    import importlib.util

    from seqkit.testing_suite import check_plugin

    path = tmp_path_factory.mktemp("backends") / "test_backends_plugin.py"
    path.write_text(BACKENDS)
    spec = importlib.util.spec_from_file_location("test_backends_plugin", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    manager = make_plugin_manager(entry_points=False, plugins=[("backends", module)])
    return {(o.check.subject.removeprefix("backend "), o.check.name): o
            for o in check_plugin(manager, "backends").outcomes}


def test_a_conforming_backend_passes_every_check(backend_outcomes):
    mine = {name: o for (backend, name), o in backend_outcomes.items() if backend == "good"}
    assert len(mine) == 4 and all(o.status == "passed" for o in mine.values()), mine


@pytest.mark.parametrize("backend, check, detail", [
    ("wrong_default", "backend_precisions",
     "backend wrong_default: default_precision() is 'bf16', not one of supported_precisions() ['fp32']"),
    ("float_memory", "backend_runtime",
     "backend float_memory: memory_stats()['allocated'] must be a non-negative int of bytes, got 1.5"),
    ("crashing_autocast", "backend_precisions", "backend crashing_autocast: autocast('bf16') (unsupported) "
     "raised KeyError"),
    ("misnamed", "backend_identity", "backend misnamed: its name attribute is 'other'"),
])
def test_backend_checks_say_what_is_wrong(backend_outcomes, backend, check, detail):
    outcome = backend_outcomes[(backend, check)]
    assert outcome.status == "failed" and detail in outcome.detail, outcome.detail


# -- gradients (the distributed rule) -----------------------------------------------------------


def test_parameters_without_a_gradient_are_named_as_a_warning():
    manager = make_plugin_manager()
    outcomes = [run_check(c) for c in conformance_checks(manager, "seqkit_transformer")
                if c.name == "every_parameter_gets_a_gradient"]
    by_subject = {o.check.subject: o for o in outcomes}
    lm = by_subject["decoder transformer (language model)"]
    assert lm.status == "warning" and "decoder.layers.0.cross.q.weight" in lm.detail
    assert "find_unused_parameters" in lm.detail
    assert by_subject["encoder transformer + decoder transformer (seq2seq)"].status == "passed"
    assert by_subject["encoder transformer (classifier)"].status == "passed"
