"""What ``seqkit bench`` shows and writes: a table, JSON, CSV and the seed's chart."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from seqkit.bench.settings import ROW_FIELDS, BenchResult, BenchRow
from seqkit.checkpoint import atomic_write

COLUMNS = ("arch", "mode", "impl", "len", "batch", "tokens/s (min-max)", "ms/step (min-max)",
           "peak MiB", "params", "GFLOP/step", "MFU", "ratio")
RATIO_NOTES = {"raw": "ratio: seqkit / raw PyTorch tokens/s (train, encode)",
               "generate": "ratio (generate): seqkit's cached greedy / recompute tokens/s; "
                           "beam4 / greedy tokens/s",
               "ctranslate2": "ratio (ctranslate2 and -int8 rows): CTranslate2's or seqkit's int8 / seqkit "
                              "fp32 tokens/s, greedy against seqkit's greedy, beam4 against seqkit's beam4"}


def format_table(result: BenchResult) -> str:
    """Rows as an aligned text table, with a header line naming the device and threads."""
    meta = result.meta
    lines = [f"seqkit bench: {meta['backend']} ({meta['device']}), {meta['precision']}, "
             f"{meta['threads']} threads, torch {meta['torch']}"
             + (", compiled" if meta["compile"] else "")]
    table = [COLUMNS, *(_cells(row) for row in result.rows)]
    widths = [max(len(cells[i]) for cells in table) for i in range(len(COLUMNS))]
    for cells in table:
        lines.append("  ".join(c.rjust(w) if i >= 3 else c.ljust(w)
                               for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip())
    implementations = {row.implementation for row in result.rows} | {row.mode for row in result.rows}
    lines += [note for key, note in RATIO_NOTES.items() if key in implementations]
    return "\n".join(lines)


def _cells(row: BenchRow) -> tuple[str, ...]:
    head = (row.architecture, row.mode, row.implementation, _int(row.length), _int(row.batch_size))
    if row.status != "ok":
        return (*head, row.status, "", "", _int(row.parameters), "", "", "")
    memory = "-" if row.peak_memory_bytes is None else f"{row.peak_memory_bytes / 2**20:.0f}"
    flops = "-" if row.flops_per_step is None else f"{row.flops_per_step / 1e9:.3g}"
    return (*head,
            f"{row.tokens_per_s:,.0f} ({row.tokens_per_s_min:,.0f}-{row.tokens_per_s_max:,.0f})",
            f"{row.ms_per_step:.2f} ({row.ms_per_step_min:.2f}-{row.ms_per_step_max:.2f})",
            memory, _int(row.parameters), flops,
            "-" if row.mfu is None else f"{100 * row.mfu:.1f}%",
            "" if row.ratio_vs_baseline is None else f"{row.ratio_vs_baseline:.3f}")


def _int(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def write_json(result: BenchResult, path: Path) -> None:
    atomic_write(path, (json.dumps(result.to_json(), indent=2) + "\n").encode())


def write_csv(result: BenchResult, path: Path) -> None:
    """One line per row, the columns of BenchRow plus device, precision and threads."""
    extra = ("backend", "device", "precision", "threads")
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow((*ROW_FIELDS, *extra))
    for row in result.rows:
        values = [getattr(row, name) for name in ROW_FIELDS]
        writer.writerow("" if v is None else v for v in
                         (*values, *(result.meta[name] for name in extra)))
    atomic_write(path, text.getvalue().encode())


def write_plot(result: BenchResult, path: Path) -> None:
    """The seed's chart: encode latency at batch 1 and training tokens/s against length, one line
    per architecture (seqkit solid, the raw baseline dashed in the same colour)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("encode", "ms_per_step", "encode latency at batch 1 (ms)"),
              ("train", "tokens_per_s", "training tokens/s")]
    panels = [p for p in panels if any(r.mode == p[0] and r.status == "ok" for r in result.rows)]
    if not panels:
        panels = [("encode", "ms_per_step", "nothing measured")]
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    colours = {}
    for axis, (mode, metric, label) in zip(axes[0], panels, strict=True):
        for impl, style in (("seqkit", "-"), ("raw", "--")):
            for arch in dict.fromkeys(r.architecture for r in result.rows):
                points = sorted((r.length, getattr(r, metric)) for r in result.rows
                                if r.architecture == arch and r.mode == mode
                                and r.implementation == impl and r.status == "ok")
                if not points:
                    continue
                colour = colours.setdefault(arch, f"C{len(colours)}")
                axis.plot(*zip(*points, strict=True), style, marker="o", markersize=4,
                          color=colour, label=arch if impl == "seqkit" else "_nolegend_")
        axis.set_xlabel("sequence length (tokens)")
        axis.set_ylabel(label)
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="best")
    meta = result.meta
    baseline = any(r.implementation == "raw" for r in result.rows)
    threads = f"{meta['threads']} thread{'s' if meta['threads'] != 1 else ''}"
    figure.suptitle(f"seqkit bench: {meta['device']}, {meta['precision']}, {threads}"
                    + ("; dashed: the same model in raw PyTorch" if baseline else ""), fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    atomic_write(path, buffer.getvalue())
