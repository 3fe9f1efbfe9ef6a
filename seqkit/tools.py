"""Utilities on finished runs: checkpoint averaging, loss/metric plots, attention maps."""

from __future__ import annotations

from pathlib import Path

import torch

from seqkit import checkpoint as ckpt
from seqkit import storage
from seqkit.errors import CheckpointError, SeqkitError
from seqkit.run_folder import RunFolder


def average_checkpoints(paths: list[Path], out: Path) -> Path:
    """The element-wise mean of model checkpoints of one architecture (fairseq's
    average_checkpoints); metadata comes from the last one, with the averaged paths recorded."""
    if not paths:
        raise SeqkitError("average: no checkpoints given")
    total: dict[str, torch.Tensor] = {}
    meta: dict = {}
    for path in paths:
        tensors, meta = ckpt.load_tensors(path)
        if total and set(tensors) != set(total):
            raise CheckpointError(f"{path}: its tensors differ from {paths[0]}'s; cannot average")
        for name, tensor in tensors.items():
            if name in total and tensor.shape != total[name].shape:
                raise CheckpointError(f"{path}: {name} has shape {tuple(tensor.shape)}, "
                                      f"{paths[0]} has {tuple(total[name].shape)}")
            total[name] = total.get(name, 0) + tensor.double()
    averaged = {name: (value / len(paths)).to(tensors[name].dtype) for name, value in total.items()}
    meta = {**meta, "averaged": [str(p) for p in paths]}
    ckpt.save_tensors(Path(out), averaged, meta)
    return Path(out)


def plot_run(run: Path, out: Path | None = None) -> Path:
    """The run's curves as a PNG about 1200 px wide (``curves_figure``): loss, every evaluation
    metric, learning rate and throughput against steps, the best checkpoint's step marked."""
    run = Path(run)
    if not run.exists():
        raise SeqkitError(f"{run}: no such run folder")
    if not run.is_dir():
        raise SeqkitError(f"{run}: not a run folder (a file; seqkit plot takes the folder a run wrote)")
    out = Path(out) if out else run / "curves.png"
    _check_folder_of(out)
    folder = RunFolder(run)
    records = folder.read_metrics()
    if not _series(records):
        raise SeqkitError(f"{folder.metrics}: no metrics to plot (has the run started?)")
    best = folder.best_step(verify=False) if folder.best.is_file() else None
    fig = curves_figure(records, title=str(folder.root), best_step=best)
    _save_png(fig, out, dpi=CURVES_DPI)
    return out


CURVES_DPI = 100
CURVES_COLUMNS = 3
PANEL_INCHES = (4.0, 3.0)  # 3 columns of 4 in at 100 dpi: 1200 px wide
# Panel titles with units of the quantities seqkit and its built-in tasks log; another name is
# its own title. Loss is cross-entropy per target token when the run reports perplexity.
TITLES = {
    "ppl": "perplexity",
    "token_accuracy": "token accuracy (fraction)",
    "accuracy": "accuracy (fraction)",
    "exact_match": "exact match (fraction)",
    "bleu": "BLEU (0-100)",
    "chrf": "chrF (0-100)",
    "lr": "learning rate",
    "tokens_per_s": "throughput (tokens/s)",
}
TRAIN_ONLY = ("lr", "tokens_per_s")  # how training went, not what it learned: the last panels
SPLIT_COLORS = {"train": "C0", "valid": "C1", "test": "C2"}  # the same in every panel and run


def curves_figure(records: list[dict], title: str = "", best_step: int | None = None):
    """A matplotlib Figure of metrics.jsonl ``records``: one panel per quantity in a grid of
    CURVES_COLUMNS columns, every split of a quantity on the same axes (train loss with valid
    loss, test beside them) with a legend, and a dashed line at ``best_step`` in each panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = _series(records)  # quantity -> split -> [(step, value)]
    names = sorted((n for n in series if n not in TRAIN_ONLY), key=lambda n: (n != "loss", _order(n)))
    names += [n for n in TRAIN_ONLY if n in series]
    columns = min(CURVES_COLUMNS, len(names)) or 1
    rows = max(1, -(-len(names) // columns))
    width = PANEL_INCHES[0] * CURVES_COLUMNS
    fig, axes = plt.subplots(rows, columns, figsize=(width, PANEL_INCHES[1] * rows + 0.4),
                             squeeze=False, layout="constrained")
    flat = [ax for row in axes for ax in row]
    steps = [step for splits in series.values() for points in splits.values() for step, _ in points]
    low, high = min(steps, default=0), max(steps, default=1)
    pad = max(1.0, 0.03 * (high - low))  # a mark at the first or last step stays visible
    splits = list(dict.fromkeys(split for name in names for split in series[name]))
    others = sorted(split for split in splits if split not in SPLIT_COLORS)
    colors = {**SPLIT_COLORS, **{split: f"C{len(SPLIT_COLORS) + i}" for i, split in enumerate(others)}}
    for ax, name in zip(flat, names, strict=False):
        for split, points in series[name].items():
            xs, ys = zip(*points, strict=True)
            style = "-" if split == "train" else "o-"
            ax.plot(xs, ys, style, label=split, color=colors[split], markersize=4, linewidth=1.2)
        if best_step is not None:
            ax.axvline(best_step, color="0.4", linestyle="--", linewidth=1,
                       label=f"best checkpoint (step {best_step})")
        ax.set_title(_title(name, series), fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if name == "lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        ax.set_xlim(low - pad, high + pad)  # one step axis for every panel
        if ax is flat[0] or any(split not in series[names[0]] for split in series[name]):
            ax.legend(fontsize=8)  # the first panel's legend is the key: one color per split
    for ax in flat[len(names):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def _series(records: list[dict]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    series: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for record in records:
        split = record.get("eval", "train")
        if not isinstance(split, str) or not _number(record.get("step")):
            continue
        for name, value in record.items():
            if name in ("step", "eval") or not _number(value):
                continue
            series.setdefault(name, {}).setdefault(split, []).append((record["step"], value))
    # train first, then the evaluated splits in the order they came
    return {name: dict(sorted(splits.items(), key=lambda item: item[0] != "train"))
            for name, splits in series.items()}


def _order(name: str) -> int:
    order = list(TITLES)
    return order.index(name) if name in order else len(order)


def _title(name: str, series: dict) -> str:
    if name == "loss":
        return "loss (nats per token)" if "ppl" in series else "loss"
    return TITLES.get(name, name)


def _number(value) -> bool:
    """A value a metrics line may plot (a damaged line may hold anything)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def plot_attention(attention, out: Path, title: str = "") -> Path:
    """An attention map (:class:`seqkit.inference.AttentionMap`) as a heatmap PNG: output tokens
    down, source tokens across, darker where the decoder looked."""
    out = Path(out)
    _check_folder_of(out)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    weights = attention.weights.numpy()
    rows, cols = weights.shape
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * cols + 2), max(3.0, 0.4 * rows + 1.5)))
    image = ax.imshow(weights, cmap="Greys", vmin=0.0, vmax=max(float(weights.max()), 1e-6), aspect="auto")
    ax.set_xticks(range(cols), attention.source_tokens, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(rows), attention.target_tokens, fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    _save_png(fig, out, dpi=120)
    return out


def _save_png(fig, out: Path, dpi: int) -> None:
    """Render, then write atomically: a full disk or a read-only folder is one line naming ``out``
    (a StorageError), and never leaves half a PNG."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    storage.atomic_write(out, buffer.getvalue())


def _check_folder_of(out: Path) -> None:
    """A one-line error, before any drawing, when ``out`` cannot be written where it is named."""
    if not out.parent.is_dir():
        raise SeqkitError(f"{out}: the folder {out.parent} does not exist")
    if out.is_dir():
        raise SeqkitError(f"{out}: a folder; name a .png file")
