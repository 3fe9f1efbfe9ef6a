"""Shared fixtures: fake third-party plugin distributions, installed without pip; a cache of
prepared data of the test session's own."""

from __future__ import annotations

import itertools
import os
import sys
import textwrap

import pytest
import torch

_counter = itertools.count()


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory):
    """SEQKIT_CACHE for what module- and session-scoped fixtures train (set before them)."""
    os.environ["SEQKIT_CACHE"] = str(tmp_path_factory.mktemp("session-cache"))


@pytest.fixture(autouse=True)
def prepared_data_cache(tmp_path_factory, monkeypatch):
    """Runs prepare their data under SEQKIT_CACHE: each test's own folder (a test sees only the
    data it prepared itself), never the user's ~/.cache; processes a test starts inherit it."""
    monkeypatch.setenv("SEQKIT_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op torch thread for the rest of the module, restored after it: tiny tensors gain
    nothing from threads and a busy machine stalls their hand-offs for milliseconds per call, and
    a bitwise comparison with a child process needs the same thread count on both sides."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def install_plugin(tmp_path, monkeypatch):
    """install_plugin(source, dist="fake-plugin", version="1.2.3", name=None) -> entry-point name.

    Writes a module holding ``source`` and a ``*.dist-info`` folder whose entry_points.txt names it
    in group ``seqkit``, on a fresh sys.path entry: exactly what pip would leave behind.
    """
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    modules = []

    def install(source: str, dist: str = "fake-plugin", version: str = "1.2.3",
                name: str | None = None) -> str:
        module = f"seqkit_fake_{next(_counter)}"
        name = name or module
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        entry_points = info / "entry_points.txt"
        lines = entry_points.read_text() if entry_points.exists() else "[seqkit]\n"
        entry_points.write_text(lines + f"{name} = {module}\n")
        modules.append(module)
        return name

    yield install
    for module in modules:
        sys.modules.pop(module, None)


ENCODER_PLUGIN = """
from dataclasses import dataclass
from seqkit import hookimpl

@dataclass
class ToyConfig:
    layers: int = 2
    kind: str = "plain"

def build(config, d_model):
    return ("toy", config, d_model)

@hookimpl
def register_encoders(register):
    register("toy", build, ToyConfig)
"""


@pytest.fixture
def toy_encoder_plugin(install_plugin) -> str:
    """A third-party plugin registering encoder 'toy' with options layers and kind."""
    return install_plugin(ENCODER_PLUGIN, dist="seqkit-toy", version="0.4.0")



@pytest.fixture(scope="session")
def builtin_tasks():
    """A strict plugin manager holding only the built-in tasks (seqkit_tasks)."""
    import seqkit_tasks
    from seqkit.plugins import PluginManager

    manager = PluginManager(strict=True)
    manager.load("seqkit_tasks", seqkit_tasks)
    return manager


@pytest.fixture
def make_task(builtin_tasks, tmp_path):
    """make_task(name, **options): the task built from a run.toml in tmp_path, as `seqkit run` does
    (relative paths resolved against it)."""
    import tomli_w

    from seqkit.config import load_config
    from seqkit.trained import build_task

    def make(name, **options):
        path = tmp_path / "run.toml"
        path.write_text(tomli_w.dumps({"task": {"name": name, **options}}))
        return build_task(load_config(path, manager=builtin_tasks), builtin_tasks)
    return make


@pytest.fixture(scope="session")
def export_run(tmp_path_factory):
    """A tiny post-norm Transformer run on the numbers data, trained once for the export tests."""
    import seqkit
    from tests.export_support import config

    out = tmp_path_factory.mktemp("runs") / "numbers"
    seqkit.train(config(), out=out, test=False)
    return out
