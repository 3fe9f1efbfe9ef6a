"""The command line is a package with no import circle and no torch at import time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CLI = Path(__file__).resolve().parents[1] / "seqkit" / "cli"


def test_command_modules_import_only_the_group_and_shared_options():
    for path in CLI.glob("*.py"):
        if path.name == "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("seqkit.cli"):
                assert node.module in ("seqkit.cli.group", "seqkit.cli.options"), \
                    f"{path.name} imports {node.module}: only .group and .options, or a circle forms"


def test_importing_the_command_line_and_bench_settings_imports_no_torch():
    code = ("import sys, seqkit.cli, seqkit.bench, seqkit.bench.settings; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
