"""The README's plugin examples are the example plugin's files, verbatim (CI tests those files)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!-- example: (\S+)( \(part\))? -->\n```python\n(.*?)\n```", re.S)


def test_readme_plugin_examples_are_the_example_packages_files():
    blocks = MARKER.findall((ROOT / "README.md").read_text())
    names = {Path(path).name for path, _, _ in blocks}
    assert {"__init__.py", "vowels.py", "backend.py", "options.py"} <= names
    for path, part, text in blocks:
        source = (ROOT / path).read_text()
        same = (text in source) if part else (source.rstrip("\n") == text)
        assert same, f"README block differs from {path}"


def test_readme_vowels_config_trains(tmp_path):
    """The README's vowels config, as shown, passes config check and trains (two steps here)."""
    from click.testing import CliRunner

    from seqkit.cli import cli

    text = (ROOT / "README.md").read_text()
    after = text[text.index("Train it like any built-in task"):]
    toml = re.search(r"```toml\n(.*?)\n```", after, re.S).group(1)
    (tmp_path / "vowels.toml").write_text(toml)
    checked = CliRunner().invoke(cli, ["config", "check", str(tmp_path / "vowels.toml")])
    assert checked.exit_code == 0, checked.output
    trained = CliRunner().invoke(cli, ["train", str(tmp_path / "vowels.toml"), "--out", str(tmp_path / "run"),
                                       "--set", "train.steps=2", "--set", "train.eval_every=2"])
    assert trained.exit_code == 0, trained.output
