"""`seqkit train/run`: --init RUN (a run folder or a checkpoint) starts from RUN's weights and
tokenizers; samples keep to a line."""

from __future__ import annotations

import json

from click.testing import CliRunner
from safetensors.torch import load_file

from seqkit.cli import cli

PAIRS = "".join(f"{w}\t{w[::-1]}\n" for w in ["ab", "abc", "ba", "cab", "bca"] * 4)


def config(tmp_path):
    (tmp_path / "train.tsv").write_text(PAIRS)
    path = tmp_path / "reverse.toml"
    path.write_text(f"""seed = 0
[task]
name = "translation"
train = {json.dumps(str(tmp_path / "train.tsv"))}
tokenizer = "char"
[model]
d_model = 8
encoder = {{name = "gru"}}
decoder = {{name = "gru"}}
[train]
steps = 3
eval_every = 3
warmup_steps = 1
""")
    return path


def test_init_starts_from_the_runs_weights_and_a_changed_model_is_one_line(tmp_path):
    path = config(tmp_path)
    first = CliRunner().invoke(cli, ["train", str(path), "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    from_a = ["train", str(path), "--init", str(tmp_path / "a")]
    tuned = CliRunner().invoke(cli, [*from_a, "--out", str(tmp_path / "b"), "--set", "train.lr=0.0",
                                     "--set", "train.steps=1", "--set", "train.eval_every=1"])
    assert tuned.exit_code == 0, tuned.output
    a, b = (load_file(tmp_path / run / "best.safetensors") for run in "ab")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)  # one step at lr 0 from A: A
    changed = CliRunner().invoke(cli, [*from_a, "--out", str(tmp_path / "c"), "--set", "model.d_model=16"])
    assert changed.exit_code == 2 and len(changed.output.strip().splitlines()) == 1, changed.output
    assert "model.d_model" in changed.output


def test_run_samples_keep_to_their_lines():
    """A prediction holding a line break (a char tokenizer with whitespace kept can emit one)
    is shown escaped, as `seqkit generate` writes it, not as a second line."""
    from seqkit.cli.run import _short

    assert _short("two\nlines\tand a \\") == "two\\nlines\\tand a \\\\"
    assert _short([0.5] * 60).endswith("...") and len(_short([0.5] * 60)) == 100


def test_init_takes_a_checkpoint_file_as_the_api_does(tmp_path):
    path = config(tmp_path)
    first = CliRunner().invoke(cli, ["train", str(path), "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    checkpoint = tmp_path / "a" / "best.safetensors"
    tuned = CliRunner().invoke(cli, ["train", str(path), "--init", str(checkpoint), "--out",
                                     str(tmp_path / "b"), "--set", "train.lr=0.0", "--set", "train.steps=1",
                                     "--set", "train.eval_every=1"])
    assert tuned.exit_code == 0, tuned.output
    a, b = (load_file(tmp_path / run / "best.safetensors") for run in "ab")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    missing = CliRunner().invoke(cli, ["train", str(path), "--init", str(tmp_path / "nothing.safetensors"),
                                       "--out", str(tmp_path / "c")])
    assert missing.exit_code == 2 and len(missing.output.strip().splitlines()) == 1, missing.output
    assert "nothing.safetensors" in missing.output
