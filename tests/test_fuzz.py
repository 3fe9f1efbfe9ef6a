"""Fuzzing the surfaces users touch (issue 11, "Trust"): configs, data files, checkpoints and CLI
options. The property, for every case: exit status 0 with a correct result, or exit status 2 with
exactly one stderr line `seqkit: error: ...` naming what is wrong and where; never a traceback,
never a hang (a case past 20 s fails), never a changed file that should not change. From the API,
only seqkit's own exceptions (SeqkitError subclasses).

Profiles: "fuzz-ci" (default; the whole file runs in about a minute on 2 cores, no shrinking,
derandomized) and "fuzz-long" (SEQKIT_FUZZ=long: many more examples, random, with shrinking).
They are not called "ci"/"long": hypothesis activates a profile named "ci" on its own on CI machines,
and registering one under that name would change the settings of every other test in the session.
The @example cases are the ones the review named; they run in both profiles.

An explicit example that fails stops a test before its generated cases; SEQKIT_FUZZ_PHASES=
generate,shrink skips the examples to explore past them; SEQKIT_FUZZ_EXAMPLES=N sets the number of
generated cases of every test. Outcome counts per test are printed at the end (pytest -s) and
written as JSON to $SEQKIT_FUZZ_STATS when that is set. Machinery (time/memory bounds, the property, hashing,
safetensors rewriting) is in tests/fuzz_support.py.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import functools
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import tomli_w
import torch
from fuzz_support import (
    HANG_SECONDS,
    ChangedFiles,
    Violation,
    WrongResult,
    assert_unchanged,
    check_outcome,
    checkpoint_bytes,
    fail,
    hash_tree,
    invoke,
    memory_limit,
    read_header,
    record,
    report_outcomes,
    time_limit,
    write_header,
)
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from safetensors.torch import load as load_safetensors

import seqkit
from seqkit.config import tomllib
from seqkit.errors import SeqkitError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

# -- profiles ------------------------------------------------------------------------------------

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
          HealthCheck.large_base_example, HealthCheck.function_scoped_fixture]
settings.register_profile("fuzz-ci", max_examples=10, deadline=None, derandomize=True, database=None,
                          phases=[Phase.explicit, Phase.reuse, Phase.generate],
                          suppress_health_check=_QUIET, print_blob=True)
settings.register_profile("fuzz-long", max_examples=300, deadline=None, derandomize=False,
                          suppress_health_check=_QUIET, print_blob=True)
LONG = os.environ.get("SEQKIT_FUZZ", "").lower() == "long"
PROFILE = settings.get_profile("fuzz-long" if LONG else "fuzz-ci")
if os.environ.get("SEQKIT_FUZZ_PHASES"):  # e.g. "generate,shrink": explore past failing @examples
    PROFILE = settings(PROFILE, phases=[Phase[name] for name in os.environ["SEQKIT_FUZZ_PHASES"].split(",")])


def fuzz(ci: int, long: int = 300):
    """The profile's settings with ``ci`` examples in the fast profile, ``long`` in the long one
    (SEQKIT_FUZZ_EXAMPLES=N: N for every test)."""
    count = os.environ.get("SEQKIT_FUZZ_EXAMPLES")
    return settings(PROFILE, max_examples=int(count) if count else long if LONG else ci)


# -- configs under test --------------------------------------------------------------------------

# A run small enough to train one step in a fraction of a second.
TINY: dict[str, Any] = {
    "seed": 1,
    "task": {"name": "reverse", "symbols": 5, "min_len": 1, "max_len": 4, "train_size": 16,
             "valid_size": 4, "test_size": 4},
    "model": {"d_model": 8, "encoder": {"name": "gru"}, "decoder": {"name": "gru"}},
    "data": {"batch_tokens": 32, "max_source_len": 6, "max_target_len": 6},
    "train": {"steps": 1, "eval_every": 1, "log_every": 1, "warmup_steps": 0},
}

# The model the checkpoint and CLI tests load: a translation task on character pairs (so that
# --data files mean something), Transformers with learned positions of at most 16 (so that
# --max-len and long inputs can go past them).
PAIRS = [f"{w}\t{w[::-1]}" for w in
         ("abc", "bca", "cab", "abd", "dab", "bad", "cad", "dac", "acd", "bdc", "cbd", "dcb",
          "ab", "ba", "cd", "dc", "a", "b", "c", "d")]
CKPT_STEPS = 4


def trained_config(data: Path) -> dict[str, Any]:
    transformer = {"layers": 1, "heads": 2, "ffn_size": 16, "dropout": 0.0, "positions": "learned",
                   "max_positions": 16}
    return {
        "seed": 1,
        "task": {"name": "translation", "train": str(data), "valid": str(data), "test": str(data),
                 "tokenizer": "char", "vocab_size": 32},
        "model": {"d_model": 8, "encoder": {"name": "transformer", **transformer},
                  "decoder": {"name": "transformer", **transformer}},
        "data": {"batch_tokens": 64, "max_source_len": 12, "max_target_len": 12},
        "train": {"steps": CKPT_STEPS, "eval_every": 2, "log_every": 1, "warmup_steps": 0,
                  "keep_last": 2},
    }


def absolute_paths(doc: Any, base: Path) -> Any:
    """Data paths of an example config made absolute, so a mutated copy elsewhere finds them."""
    if isinstance(doc, dict):
        return {k: absolute_paths(v, base) for k, v in doc.items()}
    if isinstance(doc, str) and doc.startswith("data/"):
        return str(base / doc)
    return doc


@functools.cache
def plugin_manager():
    return seqkit.make_plugin_manager()


def _defaults(config_class) -> dict[str, Any]:
    """The options of a plugin's config dataclass that have a TOML-writable default."""
    found = {}
    for f in dataclasses.fields(config_class):
        value = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        if isinstance(value, (bool, int, float, str)):
            found[f.name] = value
        elif isinstance(value, tuple):
            found[f.name] = list(value)
    return found


@functools.cache
def config_sources() -> dict[str, dict[str, Any]]:
    """Every document the config fuzzer starts from: the tiny run, each example config, and one
    config per component table the built-in plugins register (all options at their defaults)."""
    from seqkit.plugins import CORE_DISTRIBUTION

    sources = {"tiny": TINY}
    for path in sorted(EXAMPLES.glob("*.toml")):
        sources[f"examples/{path.name}"] = absolute_paths(tomllib.loads(path.read_text()), path.parent)
    for kind in ("encoder", "decoder", "task"):
        for reg in plugin_manager().registrations(kind):
            if reg.distribution != CORE_DISTRIBUTION or reg.config_class is None:
                continue
            table = {"name": reg.name, **_defaults(reg.config_class)}
            doc = {"task": table} if kind == "task" else {"model": {"d_model": 16, kind: table}}
            sources[f"{kind}:{reg.name}"] = doc
    return sources


@functools.cache
def known_keys() -> list[str]:
    """Every option name seqkit knows: the run config's sections and every plugin's options."""
    from seqkit.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    names = set()
    for cls in (RunConfig, ModelConfig, DataConfig, TrainConfig):
        names |= {f.name for f in dataclasses.fields(cls)}
    for kind in ("encoder", "decoder", "task"):
        for reg in plugin_manager().registrations(kind):
            if reg.config_class is not None:
                names |= {f.name for f in dataclasses.fields(reg.config_class)}
    return sorted(names | {"name"})


# -- strategies ----------------------------------------------------------------------------------

NAN, INF = float("nan"), float("inf")

EXTREMES = [0, -1, 1, 2, 2**31, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**9, 10**12, 10**308,
            0.0, -0.0, 0.5, 1e-320, 1e308, -1e308, NAN, INF, -INF,
            "", " ", "x" * 100_000, "ünïcødé ✓ 😀", "\x00", "a\nb", "\ufeff", "nan", "1e3", "true",
            "lstm", "transformer", "../../etc/passwd",
            True, False, [], [1, "a"], [[1]], [0.9, 0.98, 0.5], {}, {"name": "lstm"}, {"x": 1},
            datetime.date(2024, 1, 1)]

identifiers = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)

toml_values = st.one_of(
    st.sampled_from(EXTREMES),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.text(max_size=20),
    st.lists(st.one_of(st.integers(), st.floats(), st.text(max_size=5)), max_size=3),
    st.dictionaries(identifiers, st.integers(), max_size=2),
)

# A key path segment: an index into the keys the document has at that point (so that generated
# paths hit real keys), or a key by name (a known option, or a new one: an unknown key).
segments = st.one_of(st.integers(0, 40), st.deferred(lambda: st.sampled_from(known_keys())), identifiers)
key_paths = st.lists(segments, min_size=1, max_size=4).map(tuple)

# ("delete", path) | ("set", path, value) | ("rename", path, new key)
mutations = st.one_of(
    st.tuples(st.just("delete"), key_paths),
    st.tuples(st.just("set"), key_paths, toml_values),
    st.tuples(st.just("rename"), key_paths, identifiers),
)

# byte-level damage to a written config: (kind, where in the file, as a fraction)
DAMAGES = ["none", "bom", "utf16", "non_utf8", "nul", "invalid_toml", "truncate", "empty", "crlf",
           "only_bom", "duplicate_line"]
damages = st.tuples(st.sampled_from(DAMAGES), st.floats(0, 1))

config_cases = st.tuples(st.deferred(lambda: st.sampled_from(sorted(config_sources()))),
                         st.lists(mutations, max_size=3), damages, st.booleans())

tiny_cases = st.tuples(st.just("tiny"), st.lists(mutations, min_size=1, max_size=3),
                       st.just(("none", 0.0)), st.just(True))

# data files: lines of a task's file, good and bad
GOOD_LINES = {
    "translation": ["abc\tcba", "ab\tba", "dcb\tbcd"],
    "classification": ["good film\tpos", "bad film\tneg", "fine\tpos"],
    "language_model": ["the cat sat", "a b c", "on the mat"],
    "regression": ["0.5,1,2,3,4", "-1,0,0,1,1", "2,1,1,1,1,1,1"],
}
ODD_TEXT = ["", "   ", "\t", "\t\t", "a\tb\tc", "no tab here", "x" * 20_000, "y\t" + "z" * 20_000,
            "a\x00b\tc\x00", "\ufeffa\tb", "ünï\tcødé", "😀\t😀", "a\rb\tc", "\x0b\x0c\tq", "\u2028\tx",
            "\tonly target", "only source\t", "{\"text\": 1}"]
NUMBERS = ["1e308", "-1e308", "1e309", "nan", "inf", "-inf", "9" * 400, "0x10", "1_000", "", " ",
           "1.5e-320", "--1", "１", "0", "1", "-0.5", "1e-400"]
RAW_BYTES = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x00", b"\xef\xbb\xbf", b"\x80abc"]


@st.composite
def data_lines(draw, task: str) -> list[bytes]:
    number_rows = st.lists(st.sampled_from(NUMBERS), min_size=1, max_size=12).map(",".join)
    line = st.one_of(
        st.sampled_from(GOOD_LINES[task]),
        st.sampled_from(ODD_TEXT),
        st.text(max_size=30),
        number_rows if task == "regression" else st.sampled_from(GOOD_LINES[task]),
        st.builds(lambda n: ",".join(["1"] * n), st.sampled_from([2, 3, 4, 5, 20_001])),
    ).map(lambda s: s.encode("utf-8", "surrogatepass"))
    raw = st.tuples(line, st.sampled_from(RAW_BYTES), line).map(b"".join)
    return draw(st.lists(st.one_of(line, line, raw), max_size=8))


@st.composite
def data_cases(draw):
    task = draw(st.sampled_from(sorted(GOOD_LINES)))
    return (task, draw(st.sampled_from(["train", "valid"])), draw(data_lines(task)),
            draw(st.sampled_from([b"\n", b"\r\n", b"\r"])), draw(st.booleans()), draw(st.booleans()))


# checkpoint damage: what is done to which file of a copied run folder
json_mutations = st.one_of(st.tuples(st.just("delete"), key_paths),
                           st.tuples(st.just("set"), key_paths, toml_values))
tensor_ops = st.one_of(
    st.tuples(st.sampled_from(["drop", "nan", "transpose", "grow", "rename"]), st.integers(0, 40)),
    st.tuples(st.just("dtype"), st.integers(0, 40), st.sampled_from(["float16", "int64", "bool", "float64"])),
    st.tuples(st.just("extra"), identifiers),
)
checkpoint_damage = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)), min_size=1,
                                        max_size=4), st.sampled_from(["header", "anywhere"])),
    st.tuples(st.just("meta"), st.lists(json_mutations, min_size=1, max_size=3)),
    st.tuples(st.just("config"), st.lists(mutations, min_size=1, max_size=3)),
    st.tuples(st.just("config_text"), st.text(max_size=40) | st.sampled_from(["", "[task", "x = "])),
    st.tuples(st.just("tokenizer"), st.lists(json_mutations, min_size=1, max_size=3)),
    st.tuples(st.just("tensors"), st.lists(tensor_ops, min_size=1, max_size=2)),
    st.tuples(st.just("raw_header"), st.lists(json_mutations, min_size=1, max_size=2)),
    st.tuples(st.just("no_checksum")),
    st.tuples(st.just("delete")),
)
checkpoint_cases = st.tuples(st.sampled_from(["best", "latest", "latest_trainer"]), checkpoint_damage)

# CLI option values, as typed on a command line
ODD_OPTION_VALUES = ["0", "-1", "1", "2", "3", "16", "17", "100", "10000", "1000000", str(2**31),
                     str(2**63), str(2**64), str(-(2**63)), "1" + "0" * 400, "nan", "inf", "-inf",
                     "1e308", "0.5", "1e-320", "-0.0", "abc", "", " ", "1e3", "0x10", "ünï"]
option_values = st.one_of(st.sampled_from(ODD_OPTION_VALUES), st.integers().map(str),
                          st.floats().map(str), st.text(max_size=8))
GENERATE_OPTIONS = ["--beam", "--nbest", "--max-len", "--min-len", "--temperature", "--top-k",
                    "--top-p", "--seed", "--length-penalty", "--no-repeat-ngram", "--batch-size",
                    "--format", "--backend", "--precision"]
GENERATE_FLAGS = ["--sample", "--scores", "--interactive"]
SCORE_OPTIONS = ["--format", "--batch-size", "--backend", "--precision"]
EVAL_OPTIONS = ["--split"]
INPUT_TEXTS = ["abc", "", "a b c", "dcba" * 10, "x" * 1000, "ünï", "a\x00b", " ", "\ufeffab", "\t"]
FILE_CONTENTS = [b"", b"abc\tcba\n", b"abc\n", b"a\tb\tc\n", b"\xff\xfe\n", b"\xef\xbb\xbfab\tba\r\n",
                 b"\x00\x00", b"ab\tba\n" * 3 + b"\tba\n", b"x" * 5000 + b"\tx\n", b"   \n\n",
                 b"abc\tcba", "ünï\tcød\n".encode()]


@st.composite
def cli_cases(draw):
    verb = draw(st.sampled_from(["generate", "score", "eval"]))
    names = {"generate": GENERATE_OPTIONS, "score": SCORE_OPTIONS, "eval": EVAL_OPTIONS}[verb]
    args: list[str] = ["{RUN}"]
    for name in draw(st.lists(st.sampled_from(names), max_size=4, unique=True)):
        args += [name, draw(option_values | st.sampled_from(["text", "jsonl", "cpu", "auto", "fp32",
                                                              "bf16", "train", "valid", "test"]))]
    files: dict[str, bytes] = {}
    stdin = None
    if verb == "generate":
        args += draw(st.lists(st.sampled_from(GENERATE_FLAGS), max_size=2, unique=True))
        source = draw(st.sampled_from(["texts", "file", "stdin"]))
        if source == "texts":
            texts = st.sampled_from(INPUT_TEXTS) | st.text(max_size=10)
            args += draw(st.lists(texts, min_size=1, max_size=3))
        elif source == "file":
            files["input.txt"] = draw(st.sampled_from(FILE_CONTENTS))
            args += ["--input", "{tmp}/input.txt"]
        else:
            stdin = draw(st.sampled_from(FILE_CONTENTS))
    elif verb == "score" or draw(st.booleans()):
        files["data.tsv"] = draw(st.sampled_from(FILE_CONTENTS))
        args += ["--data", "{tmp}/data.tsv"]
    return verb, tuple(args), files, stdin


# -- helpers -------------------------------------------------------------------------------------


def _resolve(table: Any, segment: Any, create: bool) -> Any:
    """The key (or list index) ``segment`` names in ``table``: an int picks among existing keys."""
    if isinstance(table, list):
        return segment % len(table) if isinstance(segment, int) and table else None
    if not isinstance(table, dict):
        return None
    if isinstance(segment, int):
        keys = list(table)
        if keys:
            return keys[segment % len(keys)]
        return f"k{segment}" if create else None
    return segment


def mutate(doc: dict[str, Any], mutation: tuple) -> None:
    """Apply one ("delete", path) / ("set", path, value) / ("rename", path, key) to ``doc``."""
    op, path = mutation[0], mutation[1]
    table = doc
    for segment in path[:-1]:
        key = _resolve(table, segment, create=op == "set")
        if key is None:
            return
        if isinstance(table, dict) and not isinstance(table.get(key), (dict, list)):
            if op != "set":
                return
            table[key] = {}
        table = table[key]
    key = _resolve(table, path[-1], create=op == "set")
    if key is None:
        return
    if op == "set":
        if isinstance(table, list) and isinstance(key, int):
            table[key] = mutation[2]
        elif isinstance(table, dict):
            table[key] = mutation[2]
    elif op == "delete":
        if isinstance(table, dict):
            table.pop(key, None)
        elif isinstance(table, list) and isinstance(key, int):
            del table[key]
    elif op == "rename" and isinstance(table, dict) and key in table:
        table[mutation[2]] = table.pop(key)


def real_path(doc: dict[str, Any], path: tuple) -> tuple[str, ...] | None:
    """``path`` with its index segments resolved against ``doc`` (for --set); None if it cannot be."""
    keys, table = [], doc
    for segment in path:
        key = _resolve(table, segment, create=True)
        if not isinstance(key, str):
            return None
        keys.append(key)
        table = table.get(key) if isinstance(table, dict) else None
    return tuple(keys)


def inline_toml(value: Any) -> str:
    """``value`` as an inline TOML value (what --set takes)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(inline_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {inline_toml(v)}" for k, v in value.items()) + "}"
    return value.isoformat()


def dump_toml(doc: dict[str, Any]) -> bytes:
    try:
        return tomli_w.dumps(doc).encode()
    except (TypeError, ValueError):  # what tomli_w cannot write; the file is then a plain string
        return repr(doc).encode()


def damage(data: bytes, kind: str, where: float) -> bytes:
    at = int(len(data) * where)
    return {
        "none": lambda: data,
        "bom": lambda: b"\xef\xbb\xbf" + data,
        "utf16": lambda: data.decode().encode("utf-16"),
        "non_utf8": lambda: data[:at] + b"\xff\xfe" + data[at:],
        "nul": lambda: data[:at] + b"\x00" + data[at:],
        "invalid_toml": lambda: data[:at] + b"\n= [[\n" + data[at:],
        "truncate": lambda: data[:at],
        "empty": lambda: b"",
        "crlf": lambda: data.replace(b"\n", b"\r\n"),
        "only_bom": lambda: b"\xef\xbb\xbf",
        "duplicate_line": lambda: data + b"\n" + (data.splitlines() or [b"seed = 1"])[0] + b"\n",
    }[kind]()


def write_case_config(case, folder: Path) -> tuple[Path, list[str]]:
    """Write the config of a config case; the --set overrides it is delivered with."""
    source, case_mutations, (kind, where), via_set = case
    doc = copy.deepcopy(config_sources()[source])
    overrides = []
    for mutation in case_mutations:
        path = real_path(doc, mutation[1]) if via_set and mutation[0] == "set" else None
        if path is not None:
            overrides += ["--set", ".".join(path) + "=" + inline_toml(mutation[2])]
        else:
            mutate(doc, mutation)
    path = folder / "run.toml"
    path.write_bytes(damage(dump_toml(doc), kind, where))
    return path, overrides


def case_folder(root: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=root))


@pytest.fixture(scope="module", autouse=True)
def bounded_module():
    """One torch thread and a cap on this process's memory for the module; outcome counts after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with memory_limit():
        yield
    torch.set_num_threads(threads)
    print("\nfuzz outcomes:\n" + report_outcomes())


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# -- 1. configs ----------------------------------------------------------------------------------

# the cases the review named, as (source, mutations, damage, via --set)
NAMED_CONFIG_CASES = [
    ("tiny", [], ("empty", 0.0), False),
    ("tiny", [("delete", ("task",))], ("none", 0.0), False),
    ("tiny", [("set", ("backend",), "tpu")], ("none", 0.0), False),
    ("tiny", [("set", ("train", "best_metric"), "blue")], ("none", 0.0), False),
    ("tiny", [("set", ("train", "lr"), NAN)], ("none", 0.0), False),
    ("tiny", [("set", ("train", "clip_norm"), INF)], ("none", 0.0), False),
    ("tiny", [("set", ("model", "embedding_dropout"), NAN)], ("none", 0.0), True),
    ("tiny", [("set", ("train", "lr"), 1e308)], ("none", 0.0), True),
    ("tiny", [("set", ("seed",), 2**64)], ("none", 0.0), False),
    ("tiny", [("set", ("model", "encoder", "layers"), 10**9)], ("none", 0.0), True),
    ("tiny", [("set", ("task", "train_size"), 10**12)], ("none", 0.0), False),
    ("tiny", [], ("bom", 0.0), False),
    ("examples/translate.toml", [], ("bom", 0.0), False),
]


def named_config_cases(test):
    for case in NAMED_CONFIG_CASES:
        test = example(case=case)(test)
    return test


@fuzz(ci=60, long=500)
@given(case=config_cases)
@named_config_cases
def test_config_check_and_show(case, scratch):
    """`config check` on a mutated config: exit 0, or one line and exit 2; the file and its folder
    are left alone; when check passes, `config show` prints TOML that shows the same again."""
    folder = case_folder(scratch)
    path, overrides = write_case_config(case, folder)
    before = hash_tree(folder)
    checked = invoke(["config", "check", path, *overrides])
    # where: the file (file:line), --set, or at least the key path
    ok = check_outcome(checked, "config check", where=(path.name, "--set", "task", "model.", "train.",
                                                        "data.", "seed", "backend", "precision"))
    assert_unchanged(before, folder, "config check", "config check")
    if not ok:
        return
    shown = invoke(["config", "show", path, *overrides])
    if not check_outcome(shown, "config show"):
        fail("config show", WrongResult(f"{shown.command}: config check passed, config show failed: "
                                        f"{shown.error_line}"))
        return
    again = folder / "shown.toml"
    again.write_text(shown.stdout)
    reshown = invoke(["config", "show", again])
    if not check_outcome(reshown, "config show") or reshown.stdout != shown.stdout:
        fail("config show", WrongResult(f"{shown.command}: what config show printed does not show the "
                                        f"same again:\n{shown.stdout[:500]}\n---\n{reshown.stdout[:500]}"
                                        f"{reshown.stderr[:300]}"))
    assert_unchanged({**before, "shown.toml": hash_tree(again)["shown.toml"]}, folder, "config show",
                     "config show")


class CheckPassedStartFailed(Violation):
    """`config check` said ok, but training failed before its first step."""


@fuzz(ci=8, long=100)
@given(case=tiny_cases)
@named_config_cases
def test_config_check_passing_means_train_starts(case, scratch):
    """When `config check` passes on a mutation of the tiny run, `seqkit train` (1 step) must start:
    exit 0, or a one-line error from a failure during training, not at start-up."""
    folder = case_folder(scratch)
    path, overrides = write_case_config(case, folder)
    if not check_outcome(invoke(["config", "check", path, *overrides]), "train after check: check"):
        return
    out = folder / "run"
    # one step and a short evaluation: the property is about start-up, not about training time
    brief = [arg for key in ("train.steps=1", "train.eval_every=1", "train.eval_examples=4")
             for arg in ("--set", key)]
    trained = invoke(["train", path, *overrides, *brief, "--out", out])
    if check_outcome(trained, "train after check", stderr_may_have_progress=True):
        return
    metrics = out / "metrics.jsonl"
    if not metrics.exists() or not metrics.read_text().strip():
        fail("train after check", CheckPassedStartFailed(f"{trained.command}: config check passed, "
                                                         f"train failed at start-up: {trained.error_line}"))


# -- 2. data files -------------------------------------------------------------------------------

DATA_SUFFIX = {"translation": "tsv", "classification": "tsv", "language_model": "txt", "regression": "csv"}


def data_config(task: str, train: Path, valid: Path) -> dict[str, Any]:
    table = {"name": task, "train": str(train), "valid": str(valid)}
    model: dict[str, Any] = {"d_model": 8}
    if task == "regression":
        table |= {"features": 2, "outputs": 1}
        model["encoder"] = {"name": "gru"}
    else:
        table |= {"tokenizer": "char", "vocab_size": 64}
        if task in ("translation", "classification"):
            model["encoder"] = {"name": "gru"}
        if task in ("translation", "language_model"):
            model["decoder"] = {"name": "gru", "attention": "none" if task == "language_model" else "general"}
    return {"seed": 1, "task": table, "model": model,
            "data": {"batch_tokens": 256, "max_source_len": 32, "max_target_len": 32},
            "train": {"steps": 1, "eval_every": 1, "log_every": 1, "warmup_steps": 0}}


@fuzz(ci=12, long=200)
@given(case=data_cases())
@example(case=("translation", "train", [], b"\n", False, False))  # empty file
@example(case=("translation", "train", [b"abc cba", b"ab ba"], b"\n", False, True))  # no tab
@example(case=("translation", "valid", [b"a\tb\tc"], b"\r\n", True, True))  # extra tab, CRLF, BOM
@example(case=("classification", "train", [b"   ", b"\t"], b"\n", False, True))  # only whitespace
@example(case=("language_model", "train", [b"ab\xffcd", b"ok"], b"\n", False, True))  # non-UTF-8
@example(case=("language_model", "train", [b"a\x00b"] * 3, b"\n", False, True))  # NUL bytes
@example(case=("translation", "train", [b"x" * 20_000 + b"\ty"], b"\n", False, True))  # very long line
@example(case=("regression", "train", [b"1e308,1e308,1e308,1e308,1e308"] * 3, b"\n", False, True))
@example(case=("regression", "train", [b"1,2,3,4," + b"9" * 400], b"\n", False, True))
def test_data_files(case, scratch):
    """A task's data file with generated contents: `config check` and one training step give exit 0,
    or one line and exit 2 that names a data file (the damaged one, or the other one where the
    damage makes it inconsistent: a valid label the damaged train file no longer has)."""
    task, split, lines, newline, bom, final_newline = case
    folder = case_folder(scratch)
    fuzzed = folder / f"{split}.{DATA_SUFFIX[task]}"
    good = folder / f"{'valid' if split == 'train' else 'train'}.{DATA_SUFFIX[task]}"
    good.write_text("\n".join(GOOD_LINES[task] * 2) + "\n")
    fuzzed.write_bytes((b"\xef\xbb\xbf" if bom else b"") + newline.join(lines)
                       + (newline if final_newline and lines else b""))
    train, valid = (fuzzed, good) if split == "train" else (good, fuzzed)
    config = folder / "run.toml"
    config.write_text(tomli_w.dumps(data_config(task, train, valid)))
    data_before = hash_tree(fuzzed) | hash_tree(good)
    check_outcome(invoke(["config", "check", config]), f"data {task}: check")
    trained = invoke(["train", config, "--out", folder / "run"])
    # a damaged train file can make the good valid file's labels unknown: that error names valid.tsv
    check_outcome(trained, f"data {task}: train", stderr_may_have_progress=True,
                  where=(fuzzed.name, good.name))
    if hash_tree(fuzzed) | hash_tree(good) != data_before:
        fail(f"data {task}: train", ChangedFiles(f"{trained.command}: changed a data file"))


# -- 3. checkpoints ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny translation model trained once for the module, and the hashes of its run folder."""
    root = tmp_path_factory.mktemp("trained")
    data = root / "pairs.tsv"
    data.write_text("\n".join(PAIRS) + "\n")
    config = root / "run.toml"
    config.write_text(tomli_w.dumps(trained_config(data)))
    run = root / "run"
    with time_limit(120, "training the fixture model"):
        seqkit.train(str(config), out=run, test=False)
    return run, hash_tree(run)


def _mutate_json_text(text: str, ops: list[tuple]) -> str:
    doc = json.loads(text)
    if isinstance(doc, dict):
        for op in ops:
            mutate(doc, op)
    return json.dumps(doc, default=str)


def damage_checkpoint(path: Path, damage_spec: tuple) -> None:
    """Apply one checkpoint damage to the file at ``path``; semantic edits keep the checksum valid."""
    kind = damage_spec[0]
    data = path.read_bytes()
    if kind == "delete":
        path.unlink()
        return
    if kind == "truncate":
        path.write_bytes(data[: int(len(data) * damage_spec[1])])
        return
    header, body = read_header(data)
    header_end = len(data) - len(body)
    if kind == "flip":
        flipped = bytearray(data)
        for where, xor in damage_spec[1]:
            span = header_end if damage_spec[2] == "header" else len(data)
            flipped[min(int(span * where), len(data) - 1)] ^= xor
        path.write_bytes(bytes(flipped))
        return
    if kind == "raw_header":  # the safetensors header itself, no checksum recomputed
        for op in damage_spec[1]:
            mutate(header, op)
        path.write_bytes(write_header(header, body))
        return
    tensors = load_safetensors(data)
    text = header["__metadata__"]["seqkit"]
    if kind == "no_checksum":
        path.write_bytes(checkpoint_bytes(tensors, text, checksum=False))
        return
    meta = json.loads(text)
    if kind == "meta":
        text = _mutate_json_text(text, damage_spec[1])
    elif kind in ("config", "config_text") and isinstance(meta.get("config"), str):
        if kind == "config_text":
            meta["config"] = damage_spec[1]
        else:
            config = tomllib.loads(meta["config"])
            for op in damage_spec[1]:
                mutate(config, op)
            meta["config"] = dump_toml(config).decode()
        text = json.dumps(meta)
    elif kind == "tokenizer" and isinstance(meta.get("task_state"), dict):
        state = meta["task_state"]
        for name, value in state.items():
            if isinstance(value, str) and value.startswith("{"):
                state[name] = _mutate_json_text(value, damage_spec[1])
                break
        text = json.dumps(meta)
    elif kind == "tensors":
        tensors = _damage_tensors(tensors, damage_spec[1])
    path.write_bytes(checkpoint_bytes(tensors, text))


def _damage_tensors(tensors: dict[str, torch.Tensor], ops: list[tuple]) -> dict[str, torch.Tensor]:
    tensors = dict(tensors)
    for op in ops:
        names = sorted(tensors)
        if op[0] == "extra":
            tensors[op[1]] = torch.zeros(2)
            continue
        if not names:
            continue
        name = names[op[1] % len(names)]
        tensor = tensors[name]
        if op[0] == "drop":
            del tensors[name]
        elif op[0] == "nan" and tensor.is_floating_point():
            tensors[name] = torch.full_like(tensor, float("nan"))
        elif op[0] == "transpose" and tensor.dim() == 2:
            tensors[name] = tensor.t().contiguous()
        elif op[0] == "grow":
            tensors[name] = torch.cat([tensor, tensor[:1]]) if tensor.dim() else tensor.reshape(1)
        elif op[0] == "rename":
            tensors[name + "_renamed"] = tensors.pop(name)
        elif op[0] == "dtype":
            tensors[name] = tensor.to(getattr(torch, op[2]))
    return tensors


def checkpoint_target(run: Path, which: str) -> Path:
    if which == "best":
        return run / "best.safetensors"
    latest = max((run / "checkpoints").glob("step-*[0-9].safetensors"))
    return latest.with_suffix(".trainer.safetensors") if which == "latest_trainer" else latest


@fuzz(ci=25, long=300)
@given(case=checkpoint_cases)
@example(case=("best", ("truncate", 0.5)))
@example(case=("best", ("meta", [("delete", ("task_state",))])))
@example(case=("best", ("meta", [("set", ("task_state",), "x")])))
@example(case=("best", ("meta", [("delete", ("config",))])))
@example(case=("best", ("meta", [("set", ("format_version",), 2**64)])))
@example(case=("best", ("meta", [("set", ("components", "encoder"), 1)])))
@example(case=("best", ("config_text", "[task")))
@example(case=("best", ("config", [("set", ("model", "d_model"), 16)])))
@example(case=("best", ("tokenizer", [("delete", ("model",))])))
@example(case=("best", ("tensors", [("drop", 0)])))
@example(case=("latest_trainer", ("meta", [("delete", ("progress",))])))
@example(case=("latest", ("truncate", 0.5)))
def test_damaged_checkpoints(case, trained_run, scratch):
    """A copy of a trained run folder with one file damaged: `eval` and `generate` give exit 0 or one
    line and exit 2 and change nothing; `seqkit.load` raises only SeqkitError; a resumed `train`
    that fails leaves every file as it was. The original run folder never changes."""
    original, original_hashes = trained_run
    which, damage_spec = case
    run = case_folder(scratch) / "run"
    shutil.copytree(original, run)
    damage_checkpoint(checkpoint_target(run, which), damage_spec)
    before = hash_tree(run)

    evaluated = invoke(["eval", run, "--json"])
    if check_outcome(evaluated, "checkpoint: eval"):
        json.loads(evaluated.stdout)
    assert_unchanged(before, run, "eval", "checkpoint: eval")

    generated = invoke(["generate", run, "abc"])
    if check_outcome(generated, "checkpoint: generate") and generated.stdout.count("\n") != 1:
        fail("checkpoint: generate", WrongResult(f"{generated.command}: expected one output line, "
                                                 f"got {generated.stdout!r}"))
    assert_unchanged(before, run, "generate", "checkpoint: generate")

    try:
        with time_limit(HANG_SECONDS, f"seqkit.load({run})"):
            model = seqkit.load(run)
            outputs = model.generate(["abc"])
        if not (isinstance(outputs, list) and len(outputs) == 1 and isinstance(outputs[0], str)):
            raise WrongResult(f"seqkit.load({run}).generate(['abc']) gave {outputs!r}")
        record("checkpoint: api", "ok")
    except SeqkitError:
        record("checkpoint: api", "error")
    except Exception as exc:  # anything else escaping the API is a violation
        exc.add_note(f"fuzz case: seqkit.load({run}).generate(['abc']) after {case}")
        fail("checkpoint: api", exc)
    assert_unchanged(before, run, "seqkit.load", "checkpoint: api")

    if which != "best":
        resumed = invoke(["train", run / "config.toml", "--out", run,
                          "--set", f"train.steps={CKPT_STEPS + 2}"])
        if not check_outcome(resumed, "checkpoint: resume", stderr_may_have_progress=True):
            # the lock file is the writer's to rewrite; every other file must be as it was
            assert_unchanged(before, run, "a failed resume", "checkpoint: resume", ignore=(".seqkit.lock",))
    assert_unchanged(original_hashes, original, "the case", "checkpoint: original")


# -- 4. CLI options ------------------------------------------------------------------------------


@fuzz(ci=40, long=400)
@given(case=cli_cases())
@example(case=("eval", (str(EXAMPLES / "translate.toml"),), {}, None))  # eval on a config file
@example(case=("eval", ("{tmp}/no-such-run",), {}, None))  # missing run folder
@example(case=("generate", ("{tmp}/no-such-run", "abc"), {}, None))
@example(case=("plot", ("{RUN}", "-o", "{tmp}/missing/folder/curves.png"), {}, None))
@example(case=("generate", ("{RUN}", "--sample", "--temperature", "inf", "abc"), {}, None))
@example(case=("generate", ("{RUN}", "--sample", "--seed", str(2**64), "abc"), {}, None))
@example(case=("generate", ("{RUN}", "--input", "{tmp}/input.txt"), {"input.txt": b"ab\xff\xfecd\n"}, None))
@example(case=("generate", ("{RUN}",), {}, b"ab\xffcd\n"))  # non-UTF-8 on standard input
@example(case=("generate", ("{RUN}", "--max-len", "100", "abc"), {}, None))  # past max_positions 16
@example(case=("generate", ("{RUN}", "a" * 40), {}, None))  # a source past max_positions 16
@example(case=("generate", ("{RUN}", "--beam", "4", "--nbest", "4", "--max-len", "100", "abc"), {}, None))
@example(case=("score", ("{RUN}", "--data", "{tmp}/data.tsv"), {"data.tsv": b"abc\n"}, None))
@example(case=("eval", ("{RUN}", "--split", "nope"), {}, None))
def test_cli_options(case, trained_run, scratch):
    """generate / score / eval / plot with generated option values and odd input files: exit 0 with
    the promised output, or one line and exit 2; the run folder never changes."""
    original, original_hashes = trained_run
    verb, args, files, stdin = case
    folder = case_folder(scratch)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    run = original
    if verb == "plot":  # plot writes into the run folder by default: give it a copy
        run = folder / "run"
        shutil.copytree(original, run)
    args = [a.replace("{tmp}", str(folder)).replace("{RUN}", str(run)) for a in args]
    outcome = invoke([verb, *args], input=stdin)
    if check_outcome(outcome, f"cli {verb}") and verb == "generate":
        _check_generated(outcome, args[1:])  # args[0] is the run
    assert_unchanged(original_hashes, original, f"seqkit {verb}", f"cli {verb}")


def _check_generated(outcome, args: list[str]) -> None:
    """Text arguments in text format: one line per input (nbest lines with --nbest)."""
    options_with_values = set(GENERATE_OPTIONS) | {"--input"}
    texts, i = [], 0
    while i < len(args):
        if args[i] in options_with_values:
            i += 2
            continue
        if args[i] not in GENERATE_FLAGS:
            texts.append(args[i])
        i += 1
    if not texts or "--interactive" in args or any("\n" in t or "\r" in t for t in texts):
        return
    nbest = int(args[args.index("--nbest") + 1]) if "--nbest" in args else 1
    jsonl = "--format" in args and args[args.index("--format") + 1] == "jsonl"
    expected = len(texts) * (1 if jsonl else nbest)
    if outcome.stdout.count("\n") != expected:
        fail(f"cli {outcome.args[0]}", WrongResult(f"{outcome.command}: expected {expected} output "
                                                   f"lines, got {outcome.stdout!r:.300}"))
