"""Nothing in seqkit unpickles: a static scan of seqkit/, plugins/ and examples/ for the calls that
would, with a self-test showing the scan catches each of them.

Flagged:
- ``torch.load`` unless it passes ``weights_only=True`` literally (torch >= 2.6 defaults to it, but
  a reader must not have to know the torch version);
- ``pickle``/``_pickle``/``cPickle``/``dill`` ``load``, ``loads`` and ``Unpickler``, ``joblib.load``,
  ``pandas.read_pickle``, ``shelve.open``;
- ``numpy.load`` (and ``numpy.lib.format.read_array``) with ``allow_pickle`` anything but a literal
  False; without the keyword it is allowed: its default is False in every numpy seqkit supports
  (>= 1.24; the default changed in 1.16.3);
- torch.distributed's ``*_object`` collectives, which unpickle what other processes send.
Both ``import x as y`` and ``from x import f as g`` are followed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("seqkit", "plugins", "examples")

UNPICKLING = {f"{module}.{name}" for module in ("pickle", "_pickle", "cPickle", "dill")
              for name in ("load", "loads", "Unpickler")}
UNPICKLING |= {"joblib.load", "pandas.read_pickle", "shelve.open"}
UNPICKLING |= {f"torch.distributed.{name}" for name in (
    "all_gather_object", "gather_object", "broadcast_object_list", "scatter_object_list",
    "recv_object_list", "send_object_list")}
NUMPY_LOADERS = {"numpy.load", "numpy.lib.format.read_array"}


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> the dotted name it stands for, from every import in the module."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
                else:
                    root = alias.name.split(".")[0]
                    names[root] = root
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _constant(node: ast.expr | None, value: bool) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def unpickling_calls(source: str, filename: str = "<source>") -> list[str]:
    """``file:line: call`` for each call in ``source`` that may unpickle."""
    tree = ast.parse(source, filename)
    aliases = _aliases(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func, aliases)
        if name is None:
            continue
        splat = any(k.arg is None for k in node.keywords)  # **kwargs could say anything
        if name == "torch.load":
            bad = not _constant(_keyword(node, "weights_only"), True)
        elif name in NUMPY_LOADERS:
            allow = _keyword(node, "allow_pickle")
            bad = splat or (allow is not None and not _constant(allow, False))
        else:
            bad = name in UNPICKLING
        if bad:
            found.append(f"{filename}:{node.lineno}: {name}")
    return found


def python_files() -> list[Path]:
    return sorted(p for folder in SCANNED for p in (ROOT / folder).rglob("*.py"))


def test_nothing_in_the_code_base_unpickles():
    files = python_files()
    assert len(files) > 30  # the scan sees the code base, not an empty folder
    found = [hit for path in files
             for hit in unpickling_calls(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))]
    assert found == []


CAUGHT = {
    "torch.load plain": "import torch\ntorch.load('f.pt')",
    "torch.load weights_only=False": "import torch\ntorch.load('f.pt', weights_only=False)",
    "torch.load weights_only variable": "import torch\nw = True\ntorch.load('f.pt', weights_only=w)",
    "from torch import load": "from torch import load\nload('f.pt')",
    "from torch import load as alias": "from torch import load as read\nread('f.pt')",
    "pickle.load": "import pickle\npickle.load(open('f', 'rb'))",
    "pickle.loads": "import pickle\npickle.loads(b'')",
    "pickle alias": "import pickle as pk\npk.loads(b'')",
    "from pickle import loads": "from pickle import loads\nloads(b'')",
    "pickle.Unpickler": "import pickle\npickle.Unpickler(open('f', 'rb')).load()",
    "_pickle.loads": "import _pickle\n_pickle.loads(b'')",
    "dill.loads": "import dill\ndill.loads(b'')",
    "joblib.load": "import joblib\njoblib.load('f')",
    "pandas.read_pickle": "import pandas as pd\npd.read_pickle('f')",
    "numpy allow_pickle=True": "import numpy as np\nnp.load('f.npy', allow_pickle=True)",
    "numpy allow_pickle variable": "import numpy as np\na = True\nnp.load('f.npy', allow_pickle=a)",
    "numpy **kwargs": "import numpy as np\nnp.load('f.npy', **options)",
    "from numpy import load": "from numpy import load\nload('f.npy', allow_pickle=True)",
    "numpy read_array": "import numpy\nnumpy.lib.format.read_array(f, allow_pickle=True)",
    "all_gather_object": "import torch.distributed as dist\ndist.all_gather_object(out, obj)",
    "broadcast_object_list": "import torch\ntorch.distributed.broadcast_object_list([x])",
    "from torch.distributed import": "from torch.distributed import gather_object\ngather_object(x)",
}

ALLOWED = {
    "torch.load weights_only=True": "import torch\ntorch.load('f.pt', weights_only=True)",
    "numpy default": "import numpy as np\nnp.load('f.npz')",
    "numpy allow_pickle=False": "import numpy as np\nnp.load('f.npz', allow_pickle=False)",
    "json.loads": "import json\njson.loads('{}')",
    "safetensors load": "from safetensors.torch import load\nload(b'')",
    "a method called load": "state = {}\nmodel.load(state)\nself.pickle.loads(x)",
    "strings mentioning it": "text = 'pickle.loads(data)'",
}


@pytest.mark.parametrize("case", sorted(CAUGHT))
def test_the_scan_catches(case):
    assert len(unpickling_calls(CAUGHT[case])) == 1, CAUGHT[case]


@pytest.mark.parametrize("case", sorted(ALLOWED))
def test_the_scan_allows(case):
    assert unpickling_calls(ALLOWED[case]) == [], ALLOWED[case]
