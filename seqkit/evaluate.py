"""Losses and evaluation: loss, perplexity and token accuracy from the model's outputs, then the
task's own metrics (exact match, BLEU, chrF, accuracy, ...) on decoded predictions.

In a distributed run each rank evaluates every W-th batch; the loss sums and counts are summed over
the ranks and the decoded predictions gathered, so every rank gets the metrics one process would."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from seqkit.data import EncodedSplit
from seqkit.errors import ConfigError
from seqkit.interfaces import DIRECTIONS, PAD, Batch, Direction, Task
from seqkit.model import SeqModel

if TYPE_CHECKING:
    from seqkit.distributed import Group

TOKEN_KINDS = ("seq2seq", "language_model")
# The directions of what evaluate() reports itself; a task declares its own (Task.metric_directions).
CORE_DIRECTIONS: dict[str, Direction] = {
    "loss": "lower", "ppl": "lower", "token_accuracy": "higher", "accuracy": "higher",
}
TRAIN_PREFIX = "train_"  # with no valid split the trainer evaluates on train: train_loss, ...


@dataclass
class LossParts:
    """Sums over one batch, so that batches and devices can be added up before dividing."""

    loss: Tensor  # summed loss (a scalar tensor, differentiable)
    count: Tensor  # predicted positions: target tokens, sequences or values
    correct: Tensor  # correctly predicted tokens or classes (0 for regression)


def loss_parts(model: SeqModel, batch: Batch, label_smoothing: float = 0.0) -> LossParts:
    """Summed loss of one batch for any model kind."""
    kind = model.kind
    if kind in TOKEN_KINDS:
        inputs, gold = batch.target[:, :-1], batch.target[:, 1:]  # teacher forcing: (B, T)
        logits = model(batch.source, batch.source_mask, inputs)  # (B, T, V)
        flat = logits.reshape(-1, logits.size(-1)).float()
        loss = F.cross_entropy(flat, gold.reshape(-1), ignore_index=PAD, reduction="sum",
                               label_smoothing=label_smoothing)
        real = gold != PAD
        correct = ((logits.argmax(-1) == gold) & real).sum()
        return LossParts(loss, real.sum(), correct)
    outputs = model(batch.source, batch.source_mask).float()  # (B, C) or (B, outputs)
    if kind == "classifier":
        loss = F.cross_entropy(outputs, batch.target, reduction="sum", label_smoothing=label_smoothing)
        correct = (outputs.argmax(-1) == batch.target).sum()
        return LossParts(loss, torch.tensor(batch.target.numel()), correct)
    loss = F.mse_loss(outputs, batch.target.float(), reduction="sum")
    return LossParts(loss, torch.tensor(batch.target.numel()), torch.tensor(0))


def target_count(kind: str, batch: Batch) -> int:
    """What ``loss_parts`` counts in ``batch`` (known before the forward pass): predicted target
    tokens for token models, sequences or values otherwise."""
    if kind in TOKEN_KINDS:
        return int((batch.target[:, 1:] != PAD).sum())
    return batch.target.numel()


@torch.inference_mode()
def predict(model: SeqModel, batch: Batch, max_len: int) -> list[Tensor]:
    """Model outputs of each example, ready for ``task.decode``: greedy token ids, class index or
    values."""
    from seqkit.generate import greedy

    if model.kind in TOKEN_KINDS:
        ids = greedy(model, batch.source, batch.source_mask, max_len, batch_size=len(batch))
        return [torch.tensor(row, dtype=torch.long) for row in ids]
    outputs = model(batch.source, batch.source_mask)
    if model.kind == "classifier":
        return list(outputs.argmax(-1).cpu())
    return list(outputs.float().cpu())


@torch.inference_mode()
def evaluate(model: SeqModel, task: Task, split: EncodedSplit, *, batch_tokens: int, max_len: int,
             device: torch.device | str = "cpu", decode_limit: int = 0,
             autocast=None, group: Group | None = None) -> tuple[dict[str, float], list[Any]]:
    """Loss, perplexity (token tasks), token accuracy or accuracy, then the task's metrics on
    predictions of the first ``decode_limit`` examples (0: all) against their raw targets. Returns
    the metrics and the decoded predictions, in split order. With a distributed ``group`` every
    rank must call this; each evaluates its share and all get the same result.

    An example with no source token (``split.empty``) adds nothing to the loss (the model cannot
    take it) and its prediction is the task's decoding of no token, what generating from an empty
    source gives: a wrong (empty) prediction scored against its reference."""
    ordered = split.model_batches(batch_tokens)
    if group is not None:
        ordered = ordered[group.rank::group.world_size]
    batches = [split.batch(indices).to(device) for indices in ordered]
    references = [example.target for example in split.examples]
    was_training = model.training
    model.eval()
    context = autocast if autocast is not None else torch.autocast("cpu", enabled=False)
    loss = count = correct = 0.0
    predictions: dict[int, Any] = {}
    decode_all = decode_limit <= 0
    generates = model.kind not in TOKEN_KINDS or model.encoder is not None  # not a language model
    try:
        for batch in batches:
            with context:
                parts = loss_parts(model, batch)
            loss += parts.loss.item()
            count += parts.count.item()
            correct += parts.correct.item()
            wanted = [i for i, index in enumerate(batch.indices.tolist())
                      if decode_all or index < decode_limit]
            if wanted and generates:
                picked = _select(batch, wanted)
                with context:
                    outputs = predict(model, picked, max_len)
                for index, output in zip(picked.indices.tolist(), outputs, strict=True):
                    predictions[index] = task.decode(output)
    finally:
        model.train(was_training)
    if group is not None and group.active:
        loss, count, correct = group.sum(loss, count, correct)
        predictions = _gather(group, predictions, task)
    if generates:
        for index in split.empty:
            if decode_all or index < decode_limit:
                predictions[index] = task.decode(torch.empty(0, dtype=torch.long))
        expected = len(split) if decode_all else min(decode_limit, len(split))
        if sorted(predictions) != list(range(expected)):  # every reference scored, each once
            raise RuntimeError(f"{split.split}: {len(predictions)} predictions for the {expected} "
                               f"examples to score (a seqkit bug)")
    metrics = {"loss": loss / max(count, 1)}
    if model.kind in TOKEN_KINDS:
        metrics["ppl"] = math.exp(min(metrics["loss"], 50.0))
        metrics["token_accuracy"] = correct / max(count, 1)
    elif model.kind == "classifier":
        metrics["accuracy"] = correct / max(count, 1)
    ordered = [predictions[i] for i in sorted(predictions)]
    if ordered:
        metrics.update(task.metrics(ordered, [references[i] for i in sorted(predictions)]))
    return metrics, ordered


def _gather(group: Group, predictions: dict[int, Any], task: Task) -> dict[int, Any]:
    """Every rank's decoded predictions, by example index, on every rank (sent as JSON)."""
    from seqkit.distributed import DistributedError

    try:
        parts = group.all_gather_json(sorted(predictions.items()))
    except DistributedError as exc:
        raise DistributedError(f"task {type(task).__name__}: decode() must return JSON values (text, "
                               f"numbers, lists) in a distributed run; {exc}") from None
    return {index: prediction for part in parts for index, prediction in part}


def _select(batch: Batch, rows: list[int]) -> Batch:
    index = torch.tensor(rows, device=batch.target.device)
    def pick(t):
        return (t.index_select(0, index) if t is not None else None)
    return Batch(pick(batch.source), pick(batch.source_mask), pick(batch.target), pick(batch.indices))


def metric_directions(task: Task | None) -> dict[str, Direction]:
    """Every metric name with a known direction: the core's, then what ``task`` declares (a task
    may not redeclare a core metric the other way)."""
    from seqkit.errors import PluginError

    directions = dict(CORE_DIRECTIONS)
    for name, direction in declared_directions(task).items():
        if directions.get(name, direction) != direction:
            raise PluginError(f"task {type(task).__name__}: metric_directions() declares {name!r} "
                              f"{direction!r}-is-better; seqkit's own {name!r} is {directions[name]!r}")
        directions[name] = direction
    return directions


def declared_directions(task: Task | None) -> dict[str, Direction]:
    """What ``task.metric_directions()`` declares ({} for no task, or a task of the older contract
    without it); a PluginError names a task whose declaration is not a dict of "higher"/"lower"."""
    from seqkit.errors import PluginError

    declared = task.metric_directions() if hasattr(task, "metric_directions") else {}
    if not isinstance(declared, dict):
        raise PluginError(f"task {type(task).__name__}: metric_directions() must return a dict "
                          f"{{name: 'higher' | 'lower'}}, got {type(declared).__name__}")
    for name, direction in declared.items():
        if not isinstance(name, str) or direction not in DIRECTIONS:
            raise PluginError(f"task {type(task).__name__}: metric_directions()[{name!r}] must be "
                              f"'higher' or 'lower', got {direction!r}")
    return declared


def metric_direction(metric: str, task: Task | None) -> Direction:
    """Whether higher or lower ``metric`` is better (``train_<name>`` as ``<name>``); a ConfigError
    when neither the core nor ``task`` declares it: seqkit never guesses from the name."""
    directions = metric_directions(task)
    for name in (metric, metric.removeprefix(TRAIN_PREFIX)):
        if name in directions:
            return directions[name]
    who = f"task {type(task).__name__}" if task is not None else "seqkit"
    raise ConfigError(f"train.best_metric: {metric!r} has no declared direction ({who} does not "
                      f"say whether higher or lower is better; declared: {', '.join(sorted(directions))})")


def is_better(metric: str, value: float, best: float | None, task: Task | None = None, *,
              direction: Direction | None = None) -> bool:
    """Whether ``value`` of ``metric`` improves on ``best``, in the direction ``task`` declares
    for it (or ``direction`` when given); a metric neither seqkit nor ``task`` declares is a
    ConfigError, never a guess from its name. A non-finite value never improves."""
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    if direction is None:
        direction = metric_direction(metric, task)
    return value < best if direction == "lower" else value > best

