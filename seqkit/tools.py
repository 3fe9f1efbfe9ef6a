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
    """Training loss and every evaluation metric against steps, one panel each, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Path(run)
    if not run.exists():
        raise SeqkitError(f"{run}: no such run folder")
    if not run.is_dir():
        raise SeqkitError(f"{run}: not a run folder (a file; seqkit plot takes the folder a run wrote)")
    out = Path(out) if out else run / "curves.png"
    _check_folder_of(out)
    folder = RunFolder(run)
    records = folder.read_metrics()
    if not records:
        raise SeqkitError(f"{folder.metrics}: no metrics to plot (has the run started?)")
    train = [r for r in records if "eval" not in r and _number(r.get("loss"))]
    evals = [r for r in records if "eval" in r]
    names = sorted({k for r in evals for k, v in r.items() if k not in ("step", "eval") and _number(v)})
    panels = 1 + len(names)
    fig, axes = plt.subplots(1, panels, figsize=(4 * panels, 3.2), squeeze=False)
    ax = axes[0][0]
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
    losses = [(r["step"], r["loss"]) for r in evals if _number(r.get("loss"))]
    if losses:
        ax.plot(*zip(*losses, strict=True), "o-", label=f"{evals[0]['eval']} loss")
    ax.set_xlabel("step")
    ax.set_title("loss")
    ax.legend()
    for ax, name in zip(axes[0][1:], names, strict=True):
        points = [(r["step"], r[name]) for r in evals if _number(r.get(name))]
        ax.plot(*zip(*points, strict=True), "o-")
        ax.set_title(name)
        ax.set_xlabel("step")
    fig.suptitle(str(folder.root))
    fig.tight_layout()
    _save_png(fig, out, dpi=100)
    return out


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
