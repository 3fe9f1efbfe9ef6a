"""The README holds true: its plugin examples are the example plugin's files, verbatim (CI tests
those files), and its configs pass `seqkit config check` as shown."""

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


def test_every_whole_config_in_the_readme_passes_config_check(tmp_path):
    """Each ```toml block of the README that is a whole run (it has a [task]) is checked as shown."""
    from click.testing import CliRunner

    from seqkit.cli import cli

    blocks = [b for b in re.findall(r"```toml\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)
              if re.search(r"^\[task\]", b, re.M)]
    assert len(blocks) >= 2
    for number, block in enumerate(blocks):
        path = tmp_path / f"block{number}.toml"
        path.write_text(block)
        result = CliRunner().invoke(cli, ["config", "check", str(path)], catch_exceptions=False)
        assert result.exit_code == 0, f"README config {number}:\n{block}\n{result.output}"
