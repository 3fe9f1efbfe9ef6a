"""seqkit bench --baseline ctranslate2: the same Transformer exported to CTranslate2, timed beside
seqkit's generation."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from seqkit.bench import BenchSettings, build_seqkit, model_config, run_bench
from seqkit.bench.ct2 import IMPLEMENTATIONS, RATIOS, SEQKIT_INT8, Translators
from seqkit.generate import SearchConfig, generate
from seqkit.plugins import make_plugin_manager
from tests.bench_support import assert_refused, invoke

TINY = ["--arch", "transformer", "--mode", "generate", "--d-model", "16", "--layers", "1", "--heads", "2",
        "--vocab", "24", "--lengths", "4", "--generate-batch", "1,3", "--warmup", "1", "--repeat", "2",
        "--threads", "1", "--baseline", "ctranslate2"]


def test_the_baseline_rows_and_ratios(tmp_path):
    result = invoke(*TINY, "--json", str(tmp_path / "bench.json"))
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["meta"]["ctranslate2"]
    rows = {(r["implementation"], r["batch_size"]): r for r in data["rows"]}
    assert {name for name, _ in rows} == {"seqkit", "recompute", "beam4", *IMPLEMENTATIONS, *SEQKIT_INT8}
    for batch in (1, 3):
        for name, against in RATIOS.items():
            row = rows[name, batch]
            assert row["status"] == "ok" and row["repetitions"] == 2 and row["tokens_per_s"] > 0
            assert row["parameters"] == rows["seqkit", batch]["parameters"]
            assert row["ratio_vs_baseline"] == pytest.approx(row["tokens_per_s"]
                                                             / rows[against, batch]["tokens_per_s"])
    for batch in (1, 3):  # seqkit's own int8 beside CTranslate2's: a quantized copy (FLOPs not counted)
        assert rows["seqkit-int8", batch]["flops_per_step"] is None
        assert rows["seqkit", batch]["flops_per_step"]
    table = result.output
    assert "ctranslate2-int8-beam4" in table and "beam4-int8" in table
    assert "ratio (ctranslate2 and -int8 rows): CTranslate2's or seqkit's int8 / seqkit fp32" in table


def test_the_translator_holds_seqkits_model():
    """Not a look-alike: the float32 translator decodes the bench's random sources as seqkit does."""
    manager = make_plugin_manager()
    settings = BenchSettings(architectures=("transformer",), d_model=16, layers=2, heads=2, vocab=40,
                             dropout=0.0)
    config = model_config("transformer", settings, manager)
    torch.manual_seed(3)
    model = build_seqkit(config, settings, manager).eval()
    translators = Translators(model, config, settings.vocab, threads=1)
    source = torch.randint(4, settings.vocab, (5, 7), generator=torch.Generator().manual_seed(0))
    ours = generate(model, source, torch.ones_like(source, dtype=torch.bool), SearchConfig(max_len=7))
    tokens = [[translators.tokens[i] for i in row] for row in source.tolist()]
    from seqkit.export_ct2 import translate_options

    theirs = translators.translators["float32"].translate_batch(tokens, **translate_options(7))
    assert [r.hypotheses[0] for r in theirs] == [[translators.tokens[i] for i in h[0].tokens] for h in ours]


@pytest.mark.parametrize("args, message", [
    (["--mode", "train"], "--baseline ctranslate2: times generation only; use --mode generate"),
    (["--arch", "lstm"], "--baseline ctranslate2: --arch lstm: CTranslate2 runs the 'transformer' encoder "
                         "of seqkit_transformer only"),
])
def test_what_the_baseline_cannot_time_is_one_line(args, message):
    result = invoke(*TINY, *args)
    assert_refused(result, message)


def test_a_missing_ctranslate2_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "ctranslate2", None)
    result = invoke(*TINY)
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "pip install 'seqkit[ct2]'" in result.stderr


def test_the_raw_baseline_is_still_there():
    settings = BenchSettings(architectures=("transformer",), modes=("encode",), lengths=(4,), d_model=16,
                             layers=1, heads=2, vocab=24, warmup=0, repeat=1, threads=1, baseline="raw")
    rows = run_bench(settings).rows
    assert {row.implementation for row in rows} == {"seqkit", "raw"}
