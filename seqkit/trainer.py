"""The training loop: AdamW, warm-up schedules, clipping, accumulation, mixed precision,
evaluation, checkpoints, early stopping, exact resume, Ctrl-C/SIGTERM and NaN safety.

A run folder holds ``config.toml``, ``metrics.jsonl``, ``checkpoints/step-NNNNNNN{,.trainer}.safetensors``
(the last ``keep_last``) and ``best.safetensors``. Resuming on CPU from a checkpoint at step k ends
with the same weights, bit for bit, as a run that never stopped (also after kill -9, Ctrl-C or
SIGTERM: a signal is acted on at the next step boundary, see seqkit.interrupts).

An evaluation step writes, in this order: the checkpoint (its trainer state records the evaluation
and which step is best), best.safetensors, the metrics.jsonl line, then prunes old checkpoints. A
crash anywhere in between is repaired when the run resumes (``RunFolder.repair_best`` and
``restore_metrics``); a checkpoint whose weights or evaluation are not finite is never written.

Distributed (``Group`` active): the model runs under DistributedDataParallel, each rank takes its
share of every step's batches (``step_batches``), the loss is divided by the token count of the
whole step on all ranks, so the gradient is the one a single process would get from the union of
the ranks' batches. Evaluation is shared out and summed; rank 0 alone logs and writes checkpoints,
and the other ranks wait for it at a barrier.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from seqkit import checkpoint as ckpt
from seqkit.backends import get_backend, resolve_precision
from seqkit.batching import TokenBatchSampler
from seqkit.config import RunConfig
from seqkit.data import EncodedSplit, encode_split, step_batches
from seqkit.data_cache import Prepared
from seqkit.distributed import Group, data_parallel
from seqkit.errors import CheckpointError, TrainingError
from seqkit.evaluate import evaluate, is_better, loss_parts, target_count
from seqkit.events import Events, RunInfo
from seqkit.interfaces import Task
from seqkit.interrupts import DeferredSignals, Interrupted
from seqkit.model import SeqModel, build_model, count_parameters, task_label, task_model_shape
from seqkit.plugins import PluginManager
from seqkit.prepared import PreparedSplit
from seqkit.run_data import train_split
from seqkit.run_folder import RunFolder, model_meta

log = logging.getLogger(__name__)


def learning_rate(config, step: int) -> float:
    """Learning rate of optimizer step ``step`` (1-based): linear warm-up, then the schedule."""
    t = config.train
    if t.warmup_steps and step <= t.warmup_steps:
        return t.lr * step / t.warmup_steps
    if t.schedule == "constant":
        return t.lr
    if t.schedule == "inverse_sqrt":
        return t.lr * math.sqrt(max(t.warmup_steps, 1) / step)
    progress = (step - t.warmup_steps) / max(t.steps - t.warmup_steps, 1)
    return t.min_lr + 0.5 * (t.lr - t.min_lr) * (1 + math.cos(math.pi * min(progress, 1.0)))


@dataclass
class Progress:
    """What the trainer state file holds besides tensors."""

    step: int = 0
    best_value: float | None = None
    best_step: int = 0
    bad_evals: int = 0
    sampler: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


def _check_progress(progress: Progress, step: int) -> None:
    """ValueError unless ``progress`` is what a trainer file of ``step`` holds."""
    def integer(value) -> bool:
        return type(value) is int and value >= 0

    if progress.step != step or not integer(progress.bad_evals) or not integer(progress.best_step):
        raise ValueError(f"progress says step {progress.step!r}, best step {progress.best_step!r}, "
                         f"bad evaluations {progress.bad_evals!r}; the file is of step {step}")
    if progress.best_step > step or not (progress.best_value is None or (
            type(progress.best_value) in (int, float) and math.isfinite(progress.best_value))):
        raise ValueError(f"best step {progress.best_step} with value {progress.best_value!r}")
    if not isinstance(progress.sampler, dict) or not isinstance(progress.history, list) or not all(
            isinstance(e, dict) and integer(e.get("step")) and e["step"] <= step for e in progress.history):
        raise ValueError("its data position or evaluation history is not what a trainer writes")


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """The RNG seed of rank ``rank`` > 0 (dropout differs between ranks; rank 0 keeps ``seed``)."""
    return (seed * 1_000_003 + rank * 7_919 + step) % 2**63


class Trainer:
    def __init__(self, config: RunConfig, folder: RunFolder, task: Task, manager: PluginManager,
                 events: Events | None = None, group: Group | None = None,
                 prepared: Prepared | None = None):
        self.backend = get_backend(config.backend, manager)
        self.group = group or Group(device=self.backend.device())
        self.config, self.folder, self.task = config, folder, task
        self.events = Events.of(events) if self.group.is_main else Events()  # rank 0 alone reports
        self.precision = resolve_precision(self.backend, config.precision)
        self.device = self.group.device
        self.manager = manager
        torch.manual_seed(config.seed)  # the same initial weights on every rank
        self.shape = task_model_shape(task, task_label(manager, config.task.name))
        self.model: SeqModel = build_model(config.model, self.shape, manager).to(self.device)
        if self.group.rank:
            torch.manual_seed(rank_seed(config.seed, self.group.rank))
        self.parallel = data_parallel(self.model, self.group) if self.group.active else None
        module = self.parallel or self.model
        self.step_model = torch.compile(module) if config.train.compile else module
        fused = {"fused": True} if self.device.type == "cuda" else {}
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.train.lr,
                                           betas=config.train.betas,
                                           weight_decay=config.train.weight_decay, **fused)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        # the train split from prepared files (seqkit.run_data), valid encoded in memory
        self.train_split = train_split(task, config.data, prepared, self.group, self.events)
        with self.events.timed("encoding valid"):
            self.valid_split = (encode_split(task, "valid", config.data, warn=self.group.is_main)
                                if "valid" in task.splits() else None)
        self._train_references: EncodedSplit | None = None  # see _train_for_evaluation
        self.sampler = TokenBatchSampler(self.train_split.sizes, config.data.batch_tokens, seed=config.seed)
        self.progress = Progress()
        self.parameters = count_parameters(self.model)
        self.signals = DeferredSignals(enabled=False)
        self.config_notes: list[str] | None = None  # changes config.toml must note at the next save
        self.resumed_from: Path | None = None

    # -- checkpoints ----------------------------------------------------------------------------

    def resume(self, path: Path) -> None:
        """Continue from checkpoint ``path`` (on any number of processes: the data position counts
        global batches; a rank the checkpoint has no RNG state for gets a fresh seed)."""
        tensors, _ = ckpt.load_tensors(path)
        if not all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point()):
            raise CheckpointError(f"{path}: damaged checkpoint: weights hold a NaN or an infinity "
                                  "(seqkit never saves those)")
        ckpt.load_weights(self.model, tensors, path)
        trainer_path = self.folder.trainer_path(path)
        state, info = ckpt.load_tensors(trainer_path)
        try:  # the checksum held, but the contents may still be wrong (edited, or a buggy writer)
            self._restore(state, info, self.folder.step_of(path))
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
            detail = (str(exc).splitlines() or [""])[0] or type(exc).__name__
            raise CheckpointError(f"{trainer_path}: damaged trainer state: {detail}") from None
        self.resumed_from = path
        self.events.message(f"resumed from {path} at step {self.progress.step}")

    def _restore(self, state: dict[str, torch.Tensor], info: dict[str, Any], step: int) -> None:
        """Optimizer, progress, RNG, scaler and data position from a trainer file of ``step``,
        checked before anything a resumed run writes depends on them."""
        progress = Progress(**info["progress"])
        _check_progress(progress, step)
        for name, tensor in state.items():  # seqkit never saves a diverged state (see save)
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise ValueError(f"{name} holds a NaN or an infinity")
        ckpt.restore_optimizer(self.optimizer, state, info["optimizer"])
        for param_group in self.optimizer.param_groups:  # a resumed run may change these (api.train)
            param_group["betas"] = tuple(self.config.train.betas)
            param_group["weight_decay"] = self.config.train.weight_decay
        self.progress = progress
        rank = self.group.rank
        suffix = f".{rank}" if rank else ""
        if f"rng.cpu{suffix}" in state:
            torch.set_rng_state(state[f"rng.cpu{suffix}"])
        else:
            torch.manual_seed(rank_seed(self.config.seed, rank, self.progress.step))
        if torch.cuda.is_available() and f"rng.cuda{suffix}" in state:
            torch.cuda.set_rng_state(state[f"rng.cuda{suffix}"])
        if info.get("scaler"):
            self.scaler.load_state_dict(info["scaler"])
        self.sampler.load_state_dict(self.progress.sampler)

    def save(self, metrics: dict[str, float] | None = None) -> Path:
        """Write a checkpoint of this step; every rank calls it (RNG states and a weights checksum
        are gathered), rank 0 writes, the others wait until the files are complete."""
        step = self.progress.step
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            raise TrainingError(self._nan_message(step, "weights are not finite"))
        self.progress.sampler = self.sampler.state_dict()
        path = self.folder.checkpoint_path(step)
        rng = {"rng.cpu": self.group.all_gather(torch.get_rng_state())}
        if torch.cuda.is_available():
            rng["rng.cuda"] = self.group.all_gather(torch.cuda.get_rng_state())
        replicas = self._check_replicas(step)
        if self.group.is_main:
            tensors, optimizer_meta = ckpt.optimizer_tensors(self.optimizer)
            for key, states in rng.items():
                tensors.update({key + (f".{rank}" if rank else ""): s for rank, s in enumerate(states)})
            info = {"optimizer": optimizer_meta, "progress": self.progress.__dict__,
                    "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                    "world_size": self.group.world_size, "replicas": replicas}
            meta = model_meta(self.config, self.task, self.manager, step=step, metrics=metrics)
            if self.config_notes is not None:  # a resumed run changed train.* keys
                self.folder.write_config(self.config, self.config_notes)
                self.config_notes = None
            # trainer state first: a model file without its trainer file is never taken for resume
            ckpt.save_tensors(self.folder.trainer_path(path), tensors, info)
            ckpt.save_model(path, self.model, meta)
        self.group.barrier()
        return path

    def _check_replicas(self, step: int) -> list[str]:
        """The weights checksum of every rank; DistributedDataParallel keeps them equal, and a run
        whose ranks drifted apart stops here rather than saving one rank's view."""
        if not self.group.active:
            return []
        mine = int(ckpt.content_crc32(self.model.state_dict()), 16)
        found = [f"{int(t):08x}" for t in self.group.all_gather(torch.tensor([mine], dtype=torch.int64))]
        if len(set(found)) > 1:
            raise TrainingError(f"step {step}: the ranks hold different weights (checksums "
                                f"{', '.join(found)}); training stopped")
        return found

    # -- the loop -------------------------------------------------------------------------------

    def run_info(self) -> RunInfo:
        """What this run is about to do (the start-up header)."""
        shape = self.shape
        data = {split.split: _split_counts(split) for split in (self.train_split, self.valid_split)
                if split is not None}
        return RunInfo(backend=self.backend.name, device=f"{self.device} ({self.backend.device_name()})",
                       precision=self.precision, parameters=self.parameters, folder=self.folder.root,
                       steps=self.config.train.steps, start_step=self.progress.step, data=data,
                       source_vocab=getattr(shape, "source_vocab", None),
                       target_vocab=getattr(shape, "target_vocab", None), model_kind=self.model.kind,
                       world_size=self.group.world_size, resumed_from=self.resumed_from)

    def train(self) -> dict[str, Any]:
        t = self.config.train
        self.events.started(self.run_info())
        # a distributed run's processes would see a signal at different steps: they keep the
        # default behaviour and resume from the last periodic checkpoint
        with DeferredSignals(enabled=not self.group.active) as self.signals:
            stop = t.patience > 0 and self.progress.bad_evals >= t.patience  # stopped early before
            if self._evaluation_pending():  # the run was stopped during this step's evaluation
                stop = self._evaluate_and_save(self.progress.step)
            batches = iter(self.sampler)
            busy, tokens = 0.0, 0  # seconds in training steps (not evaluation), target tokens seen
            while not stop and self.progress.step < t.steps:
                step = self.progress.step + 1
                started = time.perf_counter()
                self._step(batches, step)
                tokens += self._last_count
                busy += time.perf_counter() - started
                rate = tokens / max(busy, 1e-9)  # training throughput since this process started
                lr = learning_rate(self.config, step)
                self.events.report_step(step, t.steps, self._last_loss, rate, lr)
                if step % t.log_every == 0 and self.group.is_main:
                    self.folder.log({"step": step, "loss": self._last_loss, "lr": lr, "tokens_per_s": rate})
                evaluated = step % t.eval_every == 0 or step == t.steps
                if evaluated:
                    stop = self._evaluate_and_save(step)
                    if stop:
                        self.events.message(f"early stop at step {step}: {t.best_metric} has not "
                                            f"improved for {t.patience} evaluations")
                if self.signals.pending is not None:
                    path = self.folder.checkpoint_path(step) if evaluated else self.save()
                    self.events.message(f"interrupted: saved {path}")
                    raise Interrupted(self.signals.pending, path)
        self.signals = DeferredSignals(enabled=False)
        return {"step": self.progress.step, "best_step": self.progress.best_step,
                "best": {t.best_metric: self.progress.best_value}, "parameters": self.parameters,
                "world_size": self.group.world_size}

    def _step(self, batches, step: int) -> None:
        """One optimizer step; a signal arriving meanwhile waits for its end."""
        t = self.config.train
        for param_group in self.optimizer.param_groups:
            param_group["lr"] = learning_rate(self.config, step)
        self.model.train()
        total, count = self._forward_backward(batches)
        if not math.isfinite(total):
            raise TrainingError(self._nan_message(step, f"loss became {total}"))
        if t.clip_norm > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.progress.step = step
        self._last_loss, self._last_count = total, count

    def _evaluation_pending(self) -> bool:
        """Whether the current step is an evaluation step whose evaluation has not happened (Ctrl-C
        or SIGTERM came during it: the step was saved, the evaluation runs on resume)."""
        step, t = self.progress.step, self.config.train
        if step == 0 or not (step % t.eval_every == 0 or step == t.steps):
            return False
        return not any(entry["step"] == step for entry in self.progress.history)

    def _forward_backward(self, batches) -> tuple[float, int]:
        """Forward and backward over this rank's batches of one step; returns the step's loss per
        counted target (over all ranks) and the number counted. Each loss is divided by the whole
        step's count (all ranks, all accumulated batches) times the world size, which undoes the
        averaging of DistributedDataParallel: the gradient is that of one process seeing every
        batch of the step."""
        t, group = self.config.train, self.group
        mine = [self.train_split.batch(indices) for indices in
                step_batches(batches, t.accumulate, group.rank, group.world_size)]
        count = int(group.sum(sum(target_count(self.model.kind, batch) for batch in mine))[0])
        per_rank = max(count, 1) / group.world_size
        autocast = self.backend.autocast(self.precision)
        summed = 0.0
        for i, batch in enumerate(mine):
            last = i == len(mine) - 1  # gradients are all-reduced once, after the last batch
            no_sync = self.parallel is not None and not last
            with self.parallel.no_sync() if no_sync else contextlib.nullcontext():
                with autocast:
                    parts = loss_parts(self.step_model, batch.to(self.device), t.label_smoothing)
                self.scaler.scale(parts.loss / per_rank).backward()
            summed += parts.loss.item()
        return group.sum(summed)[0] / max(count, 1), count

    def _evaluate_and_save(self, step: int) -> bool:
        """Evaluate on valid (or train when there is none), checkpoint, track the best; True when
        early stopping says stop."""
        t, split = self.config.train, self.valid_split or self._train_for_evaluation()
        name = "valid" if self.valid_split is not None else "train"
        try:
            with self.signals.at_once(), self.events.timed(f"evaluating on {name}"):
                # evaluation changes no training state: a signal stops it right away
                metrics, _ = self.evaluate(split, name, decode_limit=t.eval_examples)
        except Interrupted as exc:
            exc.saved = self.save()  # the step is whole; its evaluation runs when the run resumes
            self.events.message(f"interrupted during evaluation: saved {exc.saved}")
            raise
        metrics = {f"{name}_{k}" if name == "train" else k: v for k, v in metrics.items()}
        value = metrics.get(t.best_metric, metrics.get(f"train_{t.best_metric}"))
        if value is None:
            raise TrainingError(f"train.best_metric: {t.best_metric!r} is not a metric of this task; "
                                f"available: {', '.join(sorted(metrics))}")
        if not math.isfinite(value):
            raise TrainingError(self._nan_message(step, f"{name} {t.best_metric} is {value}"))
        improved = is_better(t.best_metric, value, self.progress.best_value, self.task)
        if improved:
            self.progress.best_value, self.progress.best_step, self.progress.bad_evals = value, step, 0
        else:
            self.progress.bad_evals += 1
        self.progress.history.append({"step": step, "eval": name, **metrics})
        path = self.save(metrics)  # the trainer state says which step is best ...
        if self.group.is_main:
            if improved:
                self.folder.set_best(path)  # ... before best.safetensors holds it (repair_best)
            self.folder.log({"step": step, "eval": name, **metrics})
            self.folder.prune(t.keep_last, self.progress.best_step)
        self.events.evaluated(step, metrics)
        return t.patience > 0 and self.progress.bad_evals >= t.patience

    def _train_for_evaluation(self) -> EncodedSplit:
        """Without a valid split, training is evaluated on the train split: the examples it trains
        on, encoded in memory with their raw targets to score against (prepared data hold ids only)."""
        if isinstance(self.train_split, EncodedSplit):
            return self.train_split
        if self._train_references is None:
            with self.events.timed("encoding train for evaluation (no valid split)"):
                self._train_references = encode_split(self.task, "train", self.config.data, warn=False)
        return self._train_references

    def evaluate(self, split: EncodedSplit, name: str, decode_limit: int = 0):
        return evaluate(self.model, self.task, split, batch_tokens=self.config.data.batch_tokens,
                        device=self.device, autocast=self.backend.autocast(self.precision),
                        max_len=self.config.data.max_target_len, decode_limit=decode_limit,
                        group=self.group)

    def _nan_message(self, step: int, what: str) -> str:
        last = self.folder.latest_checkpoint() if self.group.is_main else None
        kept = f"last good checkpoint: {last}" if last else "no checkpoint was written yet"
        return f"step {step}: {what}; training stopped, nothing saved ({kept}); lower train.lr?"


def _split_counts(split: EncodedSplit | PreparedSplit) -> dict[str, int]:
    """Examples kept, and their tokens (sources and target sequences; none for float features)."""
    counts = {"examples": len(split)}
    tokens = split.tokens
    if tokens:
        counts["tokens"] = tokens
    return counts


__all__ = ["Events", "RunInfo", "Trainer", "TrainingError", "learning_rate", "rank_seed"]
