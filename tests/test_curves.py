"""curves.png reads at a glance: a grid about 1200 px wide, one panel per quantity (train and
valid of the same quantity on the same axes, with a legend), titles with units, the best step
marked."""

from __future__ import annotations

import json
import struct

import pytest

from seqkit.tools import curves_figure, plot_run

# what a translation run writes: train lines every log_every steps, an evaluation every eval_every
TRAIN = [{"step": s, "loss": 5.0 / s ** 0.5, "lr": 1e-3, "tokens_per_s": 900.0 + s}
         for s in range(10, 101, 10)]
EVALS = [{"step": s, "eval": "valid", "loss": 4.0 / s ** 0.5, "ppl": 2.0, "token_accuracy": s / 200,
          "exact_match": s / 300, "bleu": s / 2, "chrf": s / 3} for s in (50, 100)]
RECORDS = TRAIN + EVALS


def panels(fig):
    return [ax for ax in fig.axes if ax.get_visible() and ax.has_data()]


def test_one_panel_per_quantity_in_a_grid_about_1200_px_wide():
    fig = curves_figure(RECORDS, title="runs/x", best_step=100)
    titles = [ax.get_title() for ax in panels(fig)]
    assert titles == ["loss (nats per token)", "perplexity", "token accuracy (fraction)",
                      "exact match (fraction)", "BLEU (0-100)", "chrF (0-100)", "learning rate",
                      "throughput (tokens/s)"]
    assert sum("loss" in t for t in titles) == 1  # no quantity twice
    width, height = fig.get_size_inches() * fig.dpi
    assert 1100 <= width <= 1300 and height <= 1100
    columns = {round(ax.get_position().x0, 3) for ax in panels(fig)}
    rows = {round(ax.get_position().y0, 3) for ax in panels(fig)}
    assert len(columns) == 3 and len(rows) == 3


def test_train_and_valid_loss_share_one_panel_with_a_legend_and_the_best_step():
    fig = curves_figure(RECORDS, best_step=100)
    loss = panels(fig)[0]
    labels = [text.get_text() for text in loss.get_legend().get_texts()]
    assert labels == ["train", "valid", "best checkpoint (step 100)"]
    assert [line.get_label() for line in loss.get_lines()][:2] == ["train", "valid"]
    for ax in panels(fig):  # every panel shows where the best checkpoint is
        assert any(line.get_label().startswith("best checkpoint") for line in ax.get_lines())
        assert ax.get_xlabel() == "step"


def test_a_split_per_series_and_no_best_mark_without_a_best_checkpoint():
    test = {**EVALS[-1], "eval": "test"}
    fig = curves_figure(RECORDS + [test])
    loss = panels(fig)[0]
    assert [t.get_text() for t in loss.get_legend().get_texts()] == ["train", "valid", "test"]
    assert not any(line.get_label().startswith("best") for ax in panels(fig) for line in ax.get_lines())


def test_a_classifier_run_has_its_own_titles():
    records = [{"step": 5, "loss": 0.7, "lr": 0.001, "tokens_per_s": 10.0},
               {"step": 5, "eval": "valid", "loss": 0.6, "accuracy": 0.5}]
    titles = [ax.get_title() for ax in panels(curves_figure(records))]
    assert titles == ["loss", "accuracy (fraction)", "learning rate", "throughput (tokens/s)"]


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("n", [1, 8])
def test_plot_run_writes_a_png_1200_px_wide(tmp_path, n):
    run = tmp_path / "run"
    run.mkdir()
    records = RECORDS if n == 8 else TRAIN[:1]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    out = plot_run(run)
    width, height = png_size(out)
    assert 1100 <= width <= 1300, (width, height)
    assert height <= (1100 if n == 8 else 500)
